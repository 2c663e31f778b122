"""Accounts: creation rules, authentication (constant time for unknown names), roles, the first admin."""

from __future__ import annotations

import statistics
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.db.models import AuditEvent, Role, User
from prodtype.services import users
from prodtype.services.errors import (
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


def test_unknown_user_costs_as_much_as_a_wrong_password(session: Session) -> None:
    def seconds(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(AuthenticationError):
            users.authenticate(session, username, "wrong password here")
        return time.perf_counter() - start

    seconds("carl"), seconds("nobody-at-all")  # warm-up
    wrong_password, unknown_user = [], []
    for _ in range(9):  # alternated, so that a busy machine slows both alike
        wrong_password.append(seconds("carl"))
        unknown_user.append(seconds("nobody-at-all"))
    # Without the dummy verification an unknown name answers in well under a millisecond.
    assert statistics.median(wrong_password) > 0.005
    assert 0.5 < statistics.median(unknown_user) / statistics.median(wrong_password) < 2.0


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
