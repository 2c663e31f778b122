"""Users: create, list, change role, disable, authenticate, and the first admin."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prodtype.db.tables import Role, User
from prodtype.serving import audit
from prodtype.serving.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from prodtype.serving.security import dummy_hash, hash_password, needs_rehash, verify_password

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,63}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# One answer for an unknown name, a wrong password and a disabled account: a disabled account's answer
# must not confirm that the password was right.
BAD_CREDENTIALS = "incorrect username or password, or the account is disabled"
REVOKED = "the access token was revoked (password changed, account disabled or logged out); log in again"


def parse_role(value: str | Role) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInputError(
            f"unknown role {value!r}; expected one of {', '.join(r.value for r in Role)}"
        ) from None


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInputError(
            f"username {username!r} is not allowed: 3 to 64 characters, letters, digits and _.@- "
            "(starting with a letter or digit)"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInputError(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInputError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def create_user(
    session: Session, username: str, password: str, role: Role | str, actor: User | None = None
) -> User:
    user = User(
        username=check_username(username),
        password_hash=hash_password(check_password(password)),
        role=parse_role(role).value,
        disabled=False,
    )
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ConflictError(f"a user named {username!r} already exists")
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # created concurrently between the check and the insert
        session.rollback()
        raise ConflictError(f"a user named {username!r} already exists") from None
    audit.record(session, "user.created", "user", username, actor, {"role": user.role})
    session.commit()
    return user


def list_users(session: Session, offset: int = 0, limit: int = 100) -> tuple[Sequence[User], int]:
    count = session.scalar(select(func.count()).select_from(User)) or 0
    rows = session.scalars(select(User).order_by(User.username).offset(offset).limit(limit)).all()
    return rows, count


def update_user(
    session: Session,
    username: str,
    actor: User | None,
    role: Role | str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> User:
    """Change a user's role, disabled flag or password; the last active admin stays an enabled admin."""
    user = get_user(session, username)
    changes: dict[str, object] = {}
    new_role = parse_role(role) if role is not None else None
    if new_role is not None and new_role.value != user.role:
        changes["role"] = {"from": user.role, "to": new_role.value}
    if disabled is not None and disabled != user.disabled:
        changes["disabled"] = {"from": user.disabled, "to": disabled}
    if password is not None:
        check_password(password)
        changes["password_changed"] = True
    loses_admin = user.role == Role.ADMIN.value and not user.disabled and ("role" in changes or disabled)
    if loses_admin and _active_admins(session) <= 1:
        raise ConflictError(
            f"{username!r} is the last active admin; make another user admin before demoting or disabling it"
        )
    if not changes:
        return user
    if new_role is not None:
        user.role = new_role.value
    if disabled is not None:
        user.disabled = disabled
    if password is not None:
        user.password_hash = hash_password(password)
    if password is not None or disabled:  # the old password's tokens, or a disabled user's, stop working
        session.flush()
        _bump_token_version(session, user)
    audit.record(session, "user.updated", "user", username, actor, changes)
    session.commit()
    return user


def _active_admins(session: Session) -> int:
    query = select(func.count()).select_from(User).where(User.role == Role.ADMIN.value, ~User.disabled)
    return session.scalar(query) or 0


class LoginFailedError(AuthenticationError):
    """Wrong credentials; ``reason`` (unknown user, wrong password, disabled) is for the audit log only."""

    def __init__(self, reason: str) -> None:
        super().__init__(BAD_CREDENTIALS)
        self.reason = reason


def _plausible_username(username: str) -> bool:
    # A name no account can have is not looked up (a NUL byte is an error on PostgreSQL, not a miss).
    return 0 < len(username) <= 64 and "\x00" not in username


def authenticate(session: Session, username: str, password: str) -> User:
    """The user with these credentials. An unknown name costs the same argon2 verification as a wrong
    password, so response times do not reveal which names exist; a disabled account gets the same
    answer as a wrong password, so that the answer does not confirm a password."""
    user = (
        session.scalar(select(User).where(User.username == username))
        if _plausible_username(username)
        else None
    )
    if user is None:
        verify_password(dummy_hash(), password)
        raise LoginFailedError("unknown user")
    if not verify_password(user.password_hash, password):
        raise LoginFailedError("wrong password")
    if user.disabled:
        raise LoginFailedError("account disabled")
    if needs_rehash(user.password_hash):  # argon2 parameters were raised since this hash was made
        user.password_hash = hash_password(password)
        session.commit()
    return user


def active_user(session: Session, username: str, token_version: int | None = None) -> User:
    """The user a token names, if it still exists, is enabled and (given the token's version) has not
    revoked its tokens since: all read from the one row, in the one query a request already makes."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled:
        raise AuthenticationError("the access token's user no longer exists or is disabled")
    if token_version is not None and token_version != user.token_version:
        raise AuthenticationError(REVOKED)
    return user


def revoke_tokens(session: Session, username: str, actor: User | None, why: str = "logout") -> User:
    """Make every access token issued to ``username`` so far invalid ("log out everywhere")."""
    user = get_user(session, username)
    _bump_token_version(session, user)
    audit.record(session, "user.tokens_revoked", "user", username, actor, {"why": why})
    session.commit()
    return user


def _bump_token_version(session: Session, user: User) -> None:
    # In the database (not read-modify-write): two revocations at once both count.
    session.execute(update(User).where(User.id == user.id).values(token_version=User.token_version + 1))
    session.refresh(user)


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str | None  # set only when generated here, to be shown once


def ensure_admin(session: Session, username: str, password: str | None) -> FirstAdmin | None:
    """Create the first admin when there is none. The password comes from the caller (the
    PRODTYPE_ADMIN_PASSWORD setting) or is generated and returned so that it can be printed once."""
    if session.scalar(select(func.count()).select_from(User).where(User.role == Role.ADMIN.value)):
        return None
    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(18)
    if session.scalar(select(User).where(User.username == username)) is not None:
        # A non-admin took the name; promoting it silently would hand over the service.
        raise ConflictError(
            f"no admin exists and the name {username!r} is taken by a non-admin; set PRODTYPE_ADMIN_USERNAME "
            "to another name or promote a user with `prodtype users set-role NAME admin`"
        )
    create_user(session, username, password, Role.ADMIN)
    return FirstAdmin(username, password if generated else None)
