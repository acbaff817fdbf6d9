"""Background work of the accounts app."""

from __future__ import annotations

from celery import shared_task

from accounts import emails
from accounts.models import Invitation


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def invitation_email_send_task(invitation_id: str) -> None:
    invitation = Invitation.objects.select_related("org", "invited_by").filter(pk=invitation_id).first()
    if invitation is None or not invitation.is_pending:
        return
    emails.invitation_email_send(invitation)
