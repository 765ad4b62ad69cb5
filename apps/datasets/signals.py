"""Signals datasets sends; later apps connect to them in their AppConfig.ready() (datasets never imports them)."""

from django.dispatch import Signal

# Sent on commit for every newly stored image: sender=Image, image=<Image>. Labeling queues pre-labels on it.
image_ingested = Signal()
