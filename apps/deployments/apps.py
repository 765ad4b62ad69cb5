from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "apps.deployments"

    def ready(self):
        import atexit

        from django.db.models.signals import post_delete, post_save

        from apps.deployments import receivers, selectors
        from apps.training.hooks import install_production_model_provider
        from apps.training.signals import model_trained

        # Buffered last-seen refreshes are written when a worker exits cleanly, not lost.
        atexit.register(receivers.flush_seen_quietly)

        post_save.connect(receivers.dataset_changed, sender="datasets.Dataset", dispatch_uid="deploy-dataset-saved")
        post_delete.connect(receivers.dataset_changed, sender="datasets.Dataset", dispatch_uid="deploy-dataset-gone")
        post_save.connect(receivers.artifact_changed, sender="training.ModelArtifact", dispatch_uid="deploy-art-saved")
        post_delete.connect(receivers.artifact_changed, sender="training.ModelArtifact", dispatch_uid="deploy-art-gone")
        post_save.connect(receivers.robot_changed, sender="deployments.Robot", dispatch_uid="deploy-robot-saved")
        post_delete.connect(receivers.robot_changed, sender="deployments.Robot", dispatch_uid="deploy-robot-gone")
        model_trained.connect(receivers.model_trained, dispatch_uid="deployments-evaluate-and-gate")
        # Training asks which model is live in production (to fine-tune it): deployments answers.
        install_production_model_provider(selectors.production_model)
        # A run's page leads on to its model's pages here and in monitoring.
        from apps.training.hooks import install_model_links

        install_model_links(selectors.model_links)
