"""The link an invitation email carries. It holds the invitation's id signed with the site's secret:
whoever opens it read the invited address's mail, so the link proves that address (as a verification
link does) and signing up from it needs no second verification email."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

from accounts.models import Invitation

_SALT = "gpucloud.accounts.invitation"
SESSION_INVITATION_KEY = "invitation_token"  # the link a signed-out visitor opened, kept until sign-in


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(invitation.pk, salt=_SALT)


def invitation_url(invitation: Invitation) -> str:
    return settings.SITE_URL + reverse("invitation", args=[invitation_token(invitation)])


def invitation_from_token(token: str) -> Invitation | None:
    """The invitation a link names, or None for a forged or mangled link (whatever its state)."""
    if not token:
        return None
    try:
        invitation_id = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return Invitation.objects.select_related("org", "invited_by").filter(pk=str(invitation_id)).first()
