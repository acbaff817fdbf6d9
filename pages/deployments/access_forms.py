"""The deployment page's Access forms: grant a scoped key this deployment, or revoke the grant
(admins and owners; accounts/grants.py decides). Each answers with the deployment page."""

from __future__ import annotations

from accounts import grants
from accounts.models import GrantRole
from pages.deployments.section_forms import SectionPost, section_form

SECTION = "#access-h"


@section_form("access", anchor=SECTION)
def deployment_grant(post: SectionPost) -> None:
    key_id = post.form.get("key_id", "")
    grants.key_grant_create(
        principal=post.principal, deployment=post.deployment, key_id=key_id, role=GrantRole.INFERENCE
    )


@section_form("access", anchor=SECTION)
def deployment_grant_revoke(post: SectionPost, key_id: str) -> None:
    grants.key_grant_revoke(principal=post.principal, deployment=post.deployment, key_id=key_id)
