"""Signals datasets sends; later apps connect to them in their AppConfig.ready() (datasets never imports them)."""

from django.dispatch import Signal

# Sent on commit for every newly stored image: sender=Image, image=<Image>. Labeling queues pre-labels on it.
image_ingested = Signal()

# Sent inside the transaction that moved a dataset's class ids (reorder, merge, delete): sender=Dataset,
# dataset=<Dataset>, mapping={old_id: new_id or None (deleted)}. Labeling moves its stored predictions with it.
classes_remapped = Signal()
