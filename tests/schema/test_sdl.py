"""API-5: the SDL is committed, so every schema change shows in review."""

from __future__ import annotations

from pathlib import Path

from gardien.schema import schema

ROOT = Path(__file__).resolve().parents[2]


def test_api5_committed_sdl_matches_the_schema() -> None:
    committed = (ROOT / "schema.graphql").read_text(encoding="utf-8")

    assert committed.strip() == schema.as_str().strip(), (
        "schema.graphql is stale: run `make schema` and commit the result"
    )


def test_api2_error_codes_are_an_enum_in_the_schema() -> None:
    sdl = schema.as_str()

    assert "enum ErrorCode {" in sdl
    assert "type UserError {\n  code: ErrorCode!\n  message: String!" in sdl
