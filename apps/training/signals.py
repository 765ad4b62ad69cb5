"""Signals training sends; later apps (deployments) connect to them in their AppConfig.ready().

Training never imports a later app: it announces what happened and lets them react.
"""

from django.dispatch import Signal

# Sent on commit once a run has registered its model: sender=ModelVersion, model_version=<ModelVersion>,
# run=<TrainingRun>. Deployments evaluates the model and applies the promotion gate on it.
model_trained = Signal()
