"""Emails the accounts app sends (allauth sends its own: verification, password reset)."""

from __future__ import annotations

from django.core.mail import send_mail

from accounts.invitation_links import invitation_url
from accounts.models import Invitation


def invitation_email_send(invitation: Invitation) -> None:
    inviter = invitation.invited_by.email if invitation.invited_by else "An administrator"
    link = invitation_url(invitation)
    body = (
        f"{inviter} invited you to join the organization {invitation.org.name!r} on gpucloud "
        f"as {invitation.role}.\n\n"
        f"Open this link to sign up with this address ({invitation.email}), or to sign in if you have an "
        f"account, and join {invitation.org.name}:\n{link}\n"
    )
    send_mail(
        subject=f"[gpucloud] You're invited to {invitation.org.name}",
        message=body,
        from_email=None,
        recipient_list=[invitation.email],
    )
