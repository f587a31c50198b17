from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save, pre_save


class RewardsConfig(AppConfig):
    name = "rewards"
    verbose_name = "Rewards"

    def ready(self) -> None:
        # A stored policy changes the epoch grid the usage accumulators were cut on.
        from rewards.models import RewardPolicy as policy

        pre_save.connect(_remember_effective_from, sender=policy)
        post_save.connect(_policy_changed, sender=policy)
        post_delete.connect(_policy_changed, sender=policy)


def _remember_effective_from(sender, instance, **kwargs) -> None:
    instance._stored_effective_from = (
        sender.objects.filter(pk=instance.pk).values_list("effective_from", flat=True).first()
        if instance.pk
        else None
    )


def _policy_changed(sender, instance, **kwargs) -> None:
    from rewards import accumulators

    before = getattr(instance, "_stored_effective_from", None)
    moments = [m for m in (before, instance.effective_from) if m is not None]
    accumulators.policy_changed(min(moments))
