"""What a contributor shows the public: a display name and how the leaderboard lists them
(by a shortened wallet, by the display name, or not at all), changed on the wallets page."""

from django import forms
from django.db import IntegrityError, transaction

from contributors.models import Contributor
from contributors.models.accounts import DISPLAY_NAME_MAX, clean_display_name

# Typed input may carry what cleaning removes; what is stored is checked against DISPLAY_NAME_MAX.
_TYPED_MAX = 4 * DISPLAY_NAME_MAX


class PublicProfileForm(forms.ModelForm):
    display_name = forms.CharField(
        required=False,
        max_length=_TYPED_MAX,
        strip=False,
        label="Display name",
        help_text=f"Up to {DISPLAY_NAME_MAX} characters; not a wallet address (0x…).",
    )
    leaderboard = forms.ChoiceField(
        choices=Contributor.Leaderboard.choices,
        widget=forms.RadioSelect,
        label="On the public leaderboard",
    )

    class Meta:
        model = Contributor
        fields = ["display_name", "leaderboard"]

    def clean_display_name(self) -> str:
        return clean_display_name(self.cleaned_data.get("display_name", ""))

    def clean(self):
        data = super().clean()
        if data.get("leaderboard") == Contributor.Leaderboard.NAME and not data.get("display_name"):
            self.add_error("display_name", "Choose a display name to be listed by it.")
        return data


def save_public_profile(form: PublicProfileForm) -> bool:
    """Save a valid form; once it committed, the cached leaderboard shows the choice at once
    (`rewards.public.store.relabel`). False when another contributor took the name meanwhile."""
    from rewards.public import store

    try:
        with transaction.atomic():
            form.save()
            transaction.on_commit(store.relabel)
    except IntegrityError:
        form.add_error("display_name", "Another contributor has this display name.")
        return False
    return True
