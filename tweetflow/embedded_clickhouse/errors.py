"""Errors shaped like the server's: `Code: N. DB::Exception: msg. (NAME) (version V)`, with the
codes and names of ClickHouse's ErrorCodes.cpp, so clients raise their usual exceptions."""

from __future__ import annotations

import re

import chdb

VERSION: str = chdb.engine_version

# Error codes the endpoint raises itself (names as in ClickHouse's ErrorCodes.cpp).
_NAMES = {36: "BAD_ARGUMENTS", 40: "CHECKSUM_DOESNT_MATCH", 48: "NOT_IMPLEMENTED",
          62: "SYNTAX_ERROR", 89: "UNKNOWN_COMPRESSION_METHOD", 164: "READONLY",
          216: "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING", 271: "CANNOT_DECOMPRESS",
          372: "SESSION_NOT_FOUND", 373: "SESSION_IS_LOCKED", 452: "SETTING_CONSTRAINT_VIOLATION",
          497: "ACCESS_DENIED", 516: "AUTHENTICATION_FAILED", 1001: "STD_EXCEPTION"}
BAD_ARGUMENTS, CHECKSUM_DOESNT_MATCH, NOT_IMPLEMENTED, SYNTAX_ERROR = 36, 40, 48, 62
UNKNOWN_COMPRESSION_METHOD, READONLY, QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING = 89, 164, 216
CANNOT_DECOMPRESS, QUERY_WAS_CANCELLED, SETTING_CONSTRAINT_VIOLATION, ACCESS_DENIED = (
    271, 394, 452, 497)
SESSION_NOT_FOUND, SESSION_IS_LOCKED, AUTHENTICATION_FAILED, STD_EXCEPTION = 372, 373, 516, 1001
_ENGINE_ERROR = re.compile(
    r"^Code: (\d+)\. (?:DB::Exception: )?(.*?)(?: \(([A-Z][A-Z0-9_]*)\))?$", re.S)


class ClickHouseError(Exception):
    """An error shaped like the server's: `Code: N. DB::Exception: msg (NAME) (version V)`."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        self.code, self.message, self.name = code, message, name or _NAMES.get(code, "UNKNOWN")
        super().__init__(self.text().strip())

    @classmethod
    def from_engine(cls, exc: BaseException) -> ClickHouseError:
        text = re.sub(r"\s*\(version [0-9.]+\)\.?$", "", str(exc).strip())
        # An error raised inside a FROM INFILE read comes wrapped once more: `Code: 27. DB::Exception:
        # Code: 27. DB::Exception: ...`; the server shows it once.
        text = re.sub(r"^(Code: \d+\. DB::Exception: )\1", r"\1", text)
        if m := _ENGINE_ERROR.match(text):
            return cls(int(m.group(1)), m.group(2).removesuffix("."), m.group(3))
        return cls(STD_EXCEPTION, text)

    def text(self) -> str:
        return (f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) "
                f"(version {VERSION})\n")
