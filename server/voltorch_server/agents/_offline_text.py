"""Deterministic requirement analysis for the offline agent: split a one-line requirement into its
subject and features, and derive requirements, components and risks from keywords.

No model, no randomness: the same text always gives the same analysis.
"""

from __future__ import annotations

import re
from typing import Any

_LEAD_VERBS = (
    r"^(?:please\s+)?(?:create|build|implement|develop|make|design|write|add|set\s+up|setup|"
    r"provide|produce|generate|construct|code)\s+"
)
_FILLER = {"a", "an", "the", "simple", "basic", "small", "new", "minimal", "some", "our", "my", "quick"}
_FEATURE_CLAUSE = re.compile(
    r"\b(?:with|including|includes|featuring|supporting|that|which|to\s+support)\b", re.IGNORECASE
)
_FEATURE_VERB = re.compile(
    r"^(?:supports?|has|have|provides?|offers?|handles?|allows?(?:\s+users?)?(?:\s+to)?|lets\s+users?)\s+",
    re.IGNORECASE,
)
_SPLIT = re.compile(r",|;|\band\b|&|\bplus\b|\bas well as\b|\bor\b|/", re.IGNORECASE)
_TRAILING = re.compile(
    r"\s+(?:functionality|functionalities|features?|support|capabilit(?:y|ies)|flows?|pages?|"
    r"endpoints?|screens?|modules?|logic)$",
    re.IGNORECASE,
)

# keyword -> (core requirement title, description, component name, risks)
_DOMAINS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        (
            "auth",
            "login",
            "log in",
            "sign in",
            "signin",
            "password",
            "registration",
            "register",
            "signup",
            "sign up",
            "account",
            "user",
        ),
        {
            "core": "User storage and authentication core",
            "description": "Persist user accounts with unique usernames/emails and salted, slow password "
            "hashes; verify credentials and issue/validate sessions or tokens.",
            "component": ("user_store", "Stores user records and password hashes; looks users up by name"),
            "risks": [
                (
                    "Passwords stored or logged in plain text",
                    "Hash with a salted, slow KDF (PBKDF2/scrypt/argon2)",
                ),
                (
                    "Brute-force or credential-stuffing attacks on login",
                    "Rate-limit and lock out repeated failures",
                ),
                (
                    "Account enumeration through error messages",
                    "Return the same error for unknown user and bad password",
                ),
            ],
        },
    ),
    (
        ("todo", "task list", "tasks", "checklist"),
        {
            "core": "Task storage",
            "description": "Persist items with id, title, status and timestamps; list, update and delete them.",
            "component": ("task_store", "Stores and queries task items"),
            "risks": [("Concurrent edits of the same item", "Use versioned updates (compare-and-set)")],
        },
    ),
    (
        ("blog", "post", "article", "comment", "cms"),
        {
            "core": "Content storage",
            "description": "Persist posts/comments with authors, timestamps and publication status.",
            "component": ("content_store", "Stores and queries content items"),
            "risks": [("Stored cross-site scripting through user content", "Escape or sanitise on output")],
        },
    ),
    (
        ("api", "rest", "endpoint", "service", "server"),
        {
            "core": "HTTP API layer",
            "description": "Expose the operations as versioned HTTP endpoints with JSON bodies and clear errors.",
            "component": ("api", "Routes requests to services, validates input, maps errors to status codes"),
            "risks": [("Breaking API changes for clients", "Version the API and test the contract")],
        },
    ),
]

_GENERIC_RISKS = [
    (
        "Requirement is brief; scope and acceptance criteria are assumptions",
        "Confirm them with the requester",
    ),
    ("Invalid or unexpected input", "Validate every input at the boundary and test the error paths"),
]


def _clean(phrase: str) -> str:
    words = [w for w in re.split(r"\s+", phrase.strip(" .,:;!?\"'")) if w]
    while words and words[0].lower() in _FILLER:
        words.pop(0)
    text = " ".join(words)
    prev = None
    while prev != text:
        prev = text
        text = _TRAILING.sub("", text).strip()
    return text


def split_requirement(text: str) -> tuple[str, list[str]]:
    """('user authentication system', ['login', 'registration']) for
    'Create a simple user authentication system with login and registration functionality'."""
    first = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]
    body = re.sub(_LEAD_VERBS, "", first.strip(), flags=re.IGNORECASE)
    m = _FEATURE_CLAUSE.search(body)
    subject, rest = (body[: m.start()], body[m.end() :]) if m else (body, "")
    subject = _clean(subject) or _clean(body) or "the requested system"
    features: list[str] = []
    for part in _SPLIT.split(rest):
        f = _clean(_FEATURE_VERB.sub("", part.strip()))
        if f and f.lower() not in (x.lower() for x in features):
            features.append(f)
    if not features:
        parts = [_clean(p) for p in _SPLIT.split(subject)]
        parts = [p for p in parts if p]
        if len(parts) > 1:
            features = parts
    return subject, features[:6]


def title(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def untitle(phrase: str) -> str:
    """The phrase as it reads mid-sentence: "User login" -> "user login", but an acronym keeps its
    capitals ("CLI calculator core" stays, not "cLI calculator core")."""
    first = phrase.split(" ", 1)[0]
    if len(first) > 1 and first[1:2].isupper():
        return phrase
    return phrase[:1].lower() + phrase[1:]


def slug(phrase: str, sep: str = "_") -> str:
    s = re.sub(r"[^a-z0-9]+", sep, phrase.lower()).strip(sep)
    return s[:40].rstrip(sep) or "item"


def _domain(text: str) -> dict[str, Any] | None:
    low = text.lower()
    for keywords, info in _DOMAINS:
        if any(re.search(rf"\b{re.escape(k)}", low) for k in keywords):
            return info
    return None


def analyze(text: str) -> dict[str, Any]:
    """The analysis structure: summary, requirements, components, risks."""
    subject, features = split_requirement(text)
    domain = _domain(text)
    requirements: list[dict[str, Any]] = []
    components: list[dict[str, Any]] = []
    for f in features:
        requirements.append(
            {
                "title": title(f),
                "description": f"The {subject} must provide {f}: inputs validated, success and failure "
                "paths defined and covered by tests.",
                "priority": "must",
                "kind": "functional",
            }
        )
        components.append({"name": f"{slug(f)}_service", "responsibility": f"Implements {f}"})
    if domain:
        core_title, core_desc = domain["core"], domain["description"]
        store = domain["component"]
        risks = [{"risk": r, "mitigation": m} for r, m in domain["risks"]]
    else:
        # "CLI calculator core" is a core already: not "CLI calculator core core"
        core_title = title(subject) if subject.lower().split()[-1:] == ["core"] else f"{title(subject)} core"
        core_desc = f"The data model and persistence the {subject} needs, behind a small service interface."
        store = (slug(core_title), f"Data model and persistence of the {subject}")
        risks = []
    if not features and title(subject).lower() != core_title.lower():  # else the core is the whole of it
        requirements.append(
            {
                "title": title(subject),
                "description": f"Provide the {subject} as described: {text.strip()[:300]}",
                "priority": "must",
                "kind": "functional",
            }
        )
    requirements.insert(
        0, {"title": core_title, "description": core_desc, "priority": "must", "kind": "core"}
    )
    requirements.append(
        {
            "title": "Input validation and error handling",
            "description": "Reject malformed input with clear messages; never expose internal errors.",
            "priority": "should",
            "kind": "non-functional",
        }
    )
    requirements.append(
        {
            "title": "Automated tests and documentation",
            "description": "Unit tests for every feature and a short usage guide.",
            "priority": "should",
            "kind": "non-functional",
        }
    )
    for i, r in enumerate(requirements, 1):
        r["id"] = f"REQ-{i}"
    components.insert(0, {"name": store[0], "responsibility": store[1]})
    components.append({"name": "interface", "responsibility": f"Entry point (API/CLI) of the {subject}"})
    risks += [{"risk": r, "mitigation": m} for r, m in _GENERIC_RISKS]
    listed = ", ".join(features[:-1]) + f" and {features[-1]}" if len(features) > 1 else "".join(features)
    summary = (
        f"{title(subject)}"
        + (f" with {listed}" if listed else "")
        + (
            f"; {len(requirements)} requirements, {len(components)} components, {len(risks)} risks identified."
        )
    )
    return {
        "summary": summary,
        "subject": subject,
        "features": features,
        "requirements": [
            {k: r[k] for k in ("id", "title", "description", "priority", "kind")} for r in requirements
        ],
        "components": components,
        "risks": risks,
    }
