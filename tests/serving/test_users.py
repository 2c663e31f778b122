"""Accounts: creation rules, authentication (constant time for unknown names), roles, the first admin."""

from __future__ import annotations

import time

import argon2
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.db.tables import AuditEvent, Role, User
from prodtype.serving import security, users
from prodtype.serving.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from service_support.databases import PASSWORD


def test_create_user_stores_only_an_argon2_hash_and_audits(session: Session) -> None:
    user = users.create_user(session, "newbie", "a long enough password", Role.REVIEWER)
    assert user.role == "reviewer"
    assert user.password_hash.startswith("$argon2id$")
    assert "long enough" not in user.password_hash
    event = session.scalar(select(AuditEvent).where(AuditEvent.entity_id == "newbie"))
    assert event is not None and event.action == "user.created" and event.details == {"role": "reviewer"}


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("ab", PASSWORD, "customer", "not allowed"),
        ("with space", PASSWORD, "customer", "not allowed"),
        ("-dash-first", PASSWORD, "customer", "not allowed"),
        ("x" * 65, PASSWORD, "customer", "not allowed"),
        ("okname", "short", "customer", "too short"),
        ("okname", PASSWORD, "superuser", "unknown role 'superuser'"),
    ],
)
def test_create_user_refuses_bad_input(
    session: Session, username: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        users.create_user(session, username, password, role)


def test_duplicate_username_is_a_conflict(session: Session) -> None:
    with pytest.raises(ConflictError, match="already exists"):
        users.create_user(session, "carl", PASSWORD, Role.CUSTOMER)


def test_authenticate(session: Session) -> None:
    assert users.authenticate(session, "carl", PASSWORD).username == "carl"
    with pytest.raises(AuthenticationError, match="incorrect username or password"):
        users.authenticate(session, "carl", PASSWORD + "!")
    with pytest.raises(AuthenticationError, match="incorrect username or password"):
        users.authenticate(session, "nobody", PASSWORD)


def test_unknown_user_costs_as_much_as_a_wrong_password(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown name is verified against a hash with the same argon2 parameters as a real one, so both
    answers cost one argon2 verification. Counted, not timed: a ratio of times flakes on a busy machine."""
    verified: list[str] = []

    def counting(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return security.verify_password(password_hash, password)

    monkeypatch.setattr(users, "verify_password", counting)
    with pytest.raises(AuthenticationError):
        users.authenticate(session, "carl", "wrong password here")
    with pytest.raises(AuthenticationError):
        users.authenticate(session, "nobody-at-all", "wrong password here")
    assert len(verified) == 2
    real, dummy = (argon2.extract_parameters(h) for h in verified)
    assert dummy == real == argon2.extract_parameters(security.hash_password("x" * 12))
    # One-sided, so a loaded machine cannot make it fail: the unknown name takes a real argon2 verification
    # (tens of milliseconds), where a plain lookup takes well under one.
    start = time.perf_counter()
    with pytest.raises(AuthenticationError):
        users.authenticate(session, "nobody-at-all", "wrong password here")
    assert time.perf_counter() - start > 0.005


def test_a_hash_made_with_older_parameters_is_upgraded_at_login(session: Session) -> None:
    old = argon2.PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=2).hash(PASSWORD)
    carl = users.get_user(session, "carl")
    carl.password_hash = old
    session.commit()
    with pytest.raises(AuthenticationError):  # a wrong password changes nothing
        users.authenticate(session, "carl", "not the password")
    assert users.get_user(session, "carl").password_hash == old
    users.authenticate(session, "carl", PASSWORD)
    session.expire_all()
    upgraded = users.get_user(session, "carl").password_hash
    assert upgraded != old and not security.needs_rehash(upgraded)
    assert argon2.extract_parameters(upgraded) == argon2.extract_parameters(security.hash_password("x" * 12))
    assert users.authenticate(session, "carl", PASSWORD).password_hash == upgraded  # verifies; not redone


def test_disabled_user_cannot_log_in_or_use_a_token(session: Session) -> None:
    users.update_user(session, "carl", None, disabled=True)
    with pytest.raises(AuthenticationError, match="disabled"):
        users.authenticate(session, "carl", PASSWORD)
    with pytest.raises(AuthenticationError, match="disabled"):
        users.active_user(session, "carl")
    users.update_user(session, "carl", None, disabled=False)
    assert users.authenticate(session, "carl", PASSWORD).username == "carl"


def test_update_user_role_password_and_audit(session: Session) -> None:
    admin = users.get_user(session, "admin")
    users.update_user(session, "carl", admin, role="reviewer", password="a brand new password")
    assert users.get_user(session, "carl").role == "reviewer"
    assert users.authenticate(session, "carl", "a brand new password")
    event = session.scalars(select(AuditEvent).where(AuditEvent.entity_id == "carl")).all()[-1]
    assert event.actor == "admin"
    assert event.details == {"role": {"from": "customer", "to": "reviewer"}, "password_changed": True}
    with pytest.raises(NotFoundError):
        users.update_user(session, "ghost", admin, role="admin")


def test_last_admin_cannot_be_demoted_or_disabled(session: Session) -> None:
    with pytest.raises(ConflictError, match="last active admin"):
        users.update_user(session, "admin", None, role="customer")
    with pytest.raises(ConflictError, match="last active admin"):
        users.update_user(session, "admin", None, disabled=True)
    users.update_user(session, "rita", None, role="admin")
    users.update_user(session, "admin", None, disabled=True)  # another admin remains
    assert users.get_user(session, "admin").disabled


def test_list_users(session: Session) -> None:
    rows, count = users.list_users(session)
    assert count == 4
    assert [u.username for u in rows] == ["admin", "carl", "cora", "rita"]


def test_ensure_admin_is_a_no_op_when_an_admin_exists(session: Session) -> None:
    assert users.ensure_admin(session, "admin", None) is None


def test_ensure_admin_generates_a_password_shown_once(session: Session) -> None:
    session.get_one(User, users.get_user(session, "admin").id).role = "customer"  # no admin any more
    session.commit()
    created = users.ensure_admin(session, "root", None)
    assert created is not None and created.password is not None and len(created.password) >= 20
    root = users.authenticate(session, "root", created.password)
    assert root.role == "admin"
    assert created.password not in root.password_hash


def test_ensure_admin_uses_the_configured_password(session: Session) -> None:
    session.get_one(User, users.get_user(session, "admin").id).role = "customer"
    session.commit()
    created = users.ensure_admin(session, "root", "from the environment")
    assert created is not None and created.password is None
    assert users.authenticate(session, "root", "from the environment").role == "admin"


def test_ensure_admin_never_promotes_an_existing_non_admin(session: Session) -> None:
    session.get_one(User, users.get_user(session, "admin").id).role = "customer"
    session.commit()
    with pytest.raises(ConflictError, match="taken by a non-admin"):
        users.ensure_admin(session, "carl", None)
