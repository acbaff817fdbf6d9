"""GET/POST /api/v1/ssh-keys and DELETE /api/v1/ssh-keys/{id}: the organization's SSH public keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership, SshKey
from accounts.roles import Role
from accounts.ssh_keys import PATTERN
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDaBCEfkQtI0nTKu0EPpyfy4DddK9aL4x+/W4aTR77uw me@host"
ED25519_FINGERPRINT = "SHA256:hcGLcC7TxouL1/dHqtPy19N/uvDHsOWkm9Rt3omkNkE"
PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
SSH2 = f"---- BEGIN SSH2 PUBLIC KEY ----\n{ED25519.split()[1]}\n---- END SSH2 PUBLIC KEY ----\n"


def add(client: Client, persona: Persona, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/ssh-keys", data=json.dumps(body), content_type="application/json", **persona.auth)


def test_add_list_and_delete(client: Client, alice: Persona) -> None:
    response = add(client, alice, {"public_key": f"  {ED25519}\n", "name": " laptop "})
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("sshkey_")
    assert {k: v for k, v in body.items() if k not in ("id", "created_at")} == {
        "name": "laptop", "key_type": "ssh-ed25519", "public_key": ED25519, "fingerprint": ED25519_FINGERPRINT,
        "created_by": "alice@example.com",
    }  # fmt: skip
    stored = SshKey.objects.get(pk=body["id"])
    assert (stored.org_id, stored.created_by_id, stored.public_key) == (alice.org.pk, alice.user.pk, ED25519)

    listed = client.get("/api/v1/ssh-keys", **alice.auth)
    assert listed.status_code == 200
    assert listed.json() == [body]

    deleted = client.delete(f"/api/v1/ssh-keys/{body['id']}", **alice.auth)
    assert deleted.status_code == 204
    assert not SshKey.objects.exists()
    assert client.get("/api/v1/ssh-keys", **alice.auth).json() == []
    again = client.delete(f"/api/v1/ssh-keys/{body['id']}", **alice.auth)
    assert again.status_code == 404
    assert again.json()["error"] == {"type": "not_found_error", "message": f"No SSH key {body['id']!r}.",
                                     "param": "ssh_key_id"}  # fmt: skip


def test_without_a_name_the_comment_or_the_type_names_the_key(client: Client, alice: Persona) -> None:
    assert add(client, alice, {"public_key": ED25519}).json()["name"] == "me@host"
    bare = ssh_line("nistp256")
    assert add(client, alice, {"public_key": bare, "name": None}).json()["name"] == "ecdsa-sha2-nistp256"
    listed = client.get("/api/v1/ssh-keys", **alice.auth).json()
    assert [k["name"] for k in listed] == ["ecdsa-sha2-nistp256", "me@host"]  # newest first


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        (
            PRIVATE,
            "That is a private key; paste the .pub file (e.g. ~/.ssh/id_ed25519.pub) instead, "
            "and keep the private key to yourself.",
        ),
        (
            SSH2,
            "That is an SSH2 (PuTTY) public key block; convert it to OpenSSH format with "
            "`ssh-keygen -i -f key.pub` and paste the one line it prints.",
        ),
        ("ssh-ed25519 " + "A" * 16_400, "That is 16412 characters; a public key is one line of at most 16384."),
        (f"{ED25519}\n{ED25519}", "Paste one key on a single line: `type base64 [comment]`."),
        ("", "Paste a public key: the one line in a .pub file such as ~/.ssh/id_ed25519.pub."),
        (
            "ssh-dss AAAAB3NzaC1kc3M=",
            "Unsupported key type 'ssh-dss'; use one of ssh-ed25519, ecdsa-sha2-nistp256, "
            "ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa, sk-ssh-ed25519@openssh.com, "
            "sk-ecdsa-sha2-nistp256@openssh.com.",
        ),
        ("ssh-ed25519 %%%%", "The key's base64 part does not decode; check that it was copied in full."),
        (f"ssh-rsa {ED25519.split()[1]}", "The key says it is ssh-rsa but its data is a 'ssh-ed25519' key."),
        (
            f"ssh-ed25519 {ED25519.split()[1][:-8]}",
            "The key's data is corrupt or truncated; check that it was copied in full.",
        ),
        (
            ssh_line("rsa", bits=1024),
            "This RSA key has 1024 bits; RSA keys need at least 2048. Make a new key with `ssh-keygen -t ed25519`.",
        ),
    ],
)
def test_what_is_no_supported_public_key_is_a_400_and_writes_nothing(
    client: Client, alice: Persona, public_key: str, message: str
) -> None:
    response = add(client, alice, {"public_key": public_key, "name": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message, "param": "public_key"}
    assert not SshKey.objects.exists()


def test_a_nul_character_is_a_422_and_writes_nothing(client: Client, alice: Persona) -> None:
    response = add(client, alice, {"public_key": ED25519 + "\x00"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "public_key: text may not contain NUL characters." in response.json()["error"]["message"]
    assert not SshKey.objects.exists()


@pytest.mark.parametrize("body", [{}, {"public_key": 5}, {"public_key": ED25519, "name": "n" * 101}])
def test_a_body_its_schema_refuses_is_a_422_and_writes_nothing(client: Client, alice: Persona, body: Any) -> None:
    response = add(client, alice, body)
    assert response.status_code == 422
    assert not SshKey.objects.exists()


def test_the_same_key_twice_in_one_org_is_a_409_but_another_org_may_add_it(
    client: Client, alice: Persona, bob: Persona, charlie: Persona
) -> None:
    first = add(client, alice, {"public_key": ED25519, "name": "laptop"}).json()
    again = add(client, bob, {"public_key": ED25519.replace("me@host", "other comment"), "name": "bob's"})
    assert again.status_code == 409
    assert again.json()["error"] == {
        "type": "conflict_error", "param": "public_key",
        "message": f"This organization already has the key {ED25519_FINGERPRINT} as “laptop”.",
    }  # fmt: skip
    assert list(SshKey.objects.values_list("pk", flat=True)) == [first["id"]]
    assert add(client, charlie, {"public_key": ED25519}).status_code == 201
    assert SshKey.objects.filter(fingerprint=ED25519_FINGERPRINT).count() == 2


def test_other_orgs_keys_are_invisible_and_answer_404(client: Client, alice: Persona, charlie: Persona) -> None:
    theirs = add(client, charlie, {"public_key": ED25519}).json()
    assert client.get("/api/v1/ssh-keys", **alice.auth).json() == []
    response = client.delete(f"/api/v1/ssh-keys/{theirs['id']}", **alice.auth)
    nowhere = client.delete("/api/v1/ssh-keys/sshkey_2222222222222222", **alice.auth)
    assert response.status_code == nowhere.status_code == 404
    assert response.json()["error"]["message"] == f"No SSH key {theirs['id']!r}."
    assert SshKey.objects.filter(pk=theirs["id"]).exists()


def test_viewers_list_but_may_not_add_or_delete(client: Client, alice: Persona, bob: Persona) -> None:
    key = add(client, alice, {"public_key": ED25519}).json()
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)

    assert [k["id"] for k in client.get("/api/v1/ssh-keys", **bob.auth).json()] == [key["id"]]
    refused_add = add(client, bob, {"public_key": ssh_line("ed25519")})
    refused_delete = client.delete(f"/api/v1/ssh-keys/{key['id']}", **bob.auth)
    assert refused_add.status_code == refused_delete.status_code == 403
    assert refused_add.json()["error"]["message"] == (
        "Your role in 'Alice AI' is viewer; adding SSH keys needs member or higher."
    )
    assert refused_delete.json()["error"]["message"] == (
        "Your role in 'Alice AI' is viewer; deleting SSH keys needs member or higher."
    )
    assert list(SshKey.objects.values_list("pk", flat=True)) == [key["id"]]


def test_members_add_and_delete_keys_of_the_org(client: Client, alice: Persona, bob: Persona) -> None:
    added = add(client, bob, {"public_key": ED25519})
    assert added.status_code == 201 and added.json()["created_by"] == "bob@example.com"
    assert client.delete(f"/api/v1/ssh-keys/{added.json()['id']}", **alice.auth).status_code == 204


def test_the_description_lists_every_status(client: Client, db: None) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    statuses = {method: sorted(op["responses"]) for method, op in paths["/api/v1/ssh-keys"].items()}
    assert statuses == {"get": ["200", "401", "403"], "post": ["201", "400", "401", "403", "409", "413", "422"]}
    assert sorted(paths["/api/v1/ssh-keys/{ssh_key_id}"]["delete"]["responses"]) == ["204", "401", "403", "404"]
    body = paths["/api/v1/ssh-keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SshKeyIn"}
    described = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["SshKeyIn"]
    assert described["required"] == ["public_key"]
    assert {k: described["properties"]["public_key"][k] for k in ("minLength", "maxLength", "pattern")} == {
        "minLength": 1, "maxLength": 16384, "pattern": PATTERN,
    }  # fmt: skip
