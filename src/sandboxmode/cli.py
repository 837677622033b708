"""The ``sbm`` command.

    sbm doctor [--json]                     what this machine supports
    sbm demo                                the main job on embedded data, then attacks
    sbm run MODULE:FUNC FILE... [--json]    run FUNC(bytes of FILE) in a fresh sandbox each
    sbm parse openpgp|apparmor FILE... [--json]
    sbm selftest [--json] [--matrix]        the containment suite on this machine

Exit codes: 0 success; 1 some input failed or something escaped; 2 bad usage or an
unreadable file; 3 the sandbox is unavailable here. Text that came from a sandbox is
printed as plain text, never interpreted as markup or terminal escape sequences.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sandboxmode._errors import SandboxError, SandboxUnavailable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, emoji=False, markup=False)


def _safe(text: object, limit: int = 400) -> str:
    """Text from a sandbox: printable characters only, bounded."""
    s = text if isinstance(text, str) else repr(text)
    s = "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" for c in s[:limit])
    return s + ("…" if len(str(text)) > limit else "")


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _error_record(e: SandboxError) -> dict[str, Any]:
    return {"ok": False, "error": type(e).__name__, "errno": e.errno, "message": str(e),
            "evidence": _jsonable(e.evidence)}


# -- doctor ---------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from sandboxmode._doctor import report

    rep = report()
    if args.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
    else:
        from rich.table import Table

        t = Table(title="sandboxmode doctor")
        t.add_column("feature")
        t.add_column("status")
        for k, v in rep["features"].items():
            t.add_row(k, _safe(v))
        t.add_row("isolation level", rep["level"])
        if rep["missing"]:
            t.add_row("missing for STRONG", "; ".join(rep["missing"]))
        _console().print(t)
    return EXIT_OK if rep["level"] == "STRONG" else EXIT_UNAVAILABLE


# -- run / parse ----------------------------------------------------------------------------


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _run_files(func: Callable[..., Any], files: Sequence[str], as_json: bool,
               summarize: Callable[[Any], str]) -> int:
    import sandboxmode as sbm

    records: list[dict[str, Any]] = []
    status = EXIT_OK
    console = _console()
    progress = None
    task = None
    if not as_json and len(files) > 1:
        from rich.progress import Progress

        progress = Progress(console=console, transient=True)
        progress.start()
        task = progress.add_task("parsing", total=len(files))
    try:
        for path in files:
            rec: dict[str, Any] = {"file": path}
            try:
                data = _read(path)
            except OSError as e:
                rec.update(ok=False, error="OSError", message=f"cannot read {path}: "
                           f"{e.strerror or e}")
                status = max(status, EXIT_USAGE)
            else:
                try:
                    rec.update(ok=True, result=sbm.run(func, data))
                except SandboxUnavailable as e:
                    rec.update(_error_record(e))
                    status = max(status, EXIT_UNAVAILABLE)
                except SandboxError as e:
                    rec.update(_error_record(e))
                    status = max(status, EXIT_FAILED)
            records.append(rec)
            if as_json:
                print(json.dumps(_jsonable(rec), sort_keys=True), flush=True)
            else:
                line = (f"{path}: {summarize(rec['result'])}" if rec["ok"] else
                        f"{path}: {rec['error']}: {rec['message']}")
                console.print(_safe(line, 2000))
            if progress is not None and task is not None:
                progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()
    if not as_json and len(files) > 1:
        ok = sum(1 for r in records if r["ok"])
        console.print(f"{ok}/{len(records)} parsed")
    return status


def _resolve(spec: str) -> Callable[..., Any]:
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected MODULE:FUNC, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec} is not callable")
    return obj  # type: ignore[no-any-return]


def cmd_run(args: argparse.Namespace) -> int:
    try:
        func = _resolve(args.target)
    except (ImportError, AttributeError, ValueError) as e:
        print(f"sbm run: {e}", file=sys.stderr)
        return EXIT_USAGE
    return _run_files(func, args.files, args.json, lambda r: _safe(r, 2000))


def _summarize_pgp(certs: Any) -> str:
    out = []
    for c in certs:
        uids = [u.get("uid", "") for u in c.get("user_ids", [])] if isinstance(c, dict) else []
        out.append(f"{c.get('fingerprint')} {c.get('algorithm_name', '')} "
                   f"{uids[0] if uids else ''} (+{len(c.get('subkeys', []))} subkeys)")
    return f"{len(certs)} certificate(s): " + "; ".join(out)


def _summarize_aa(policy: Any) -> str:
    profiles = policy.get("profiles", []) if isinstance(policy, dict) else []
    names = [p.get("name") for p in profiles]
    return f"{len(profiles)} profile(s): " + ", ".join(str(n) for n in names)


def cmd_parse(args: argparse.Namespace) -> int:
    from sandboxmode.parsers import sandboxed as parsers

    if args.format == "openpgp":
        return _run_files(parsers.openpgp, args.files, args.json, _summarize_pgp)
    return _run_files(parsers.apparmor, args.files, args.json, _summarize_aa)


# -- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from sandboxmode._demo_run import demo

    return demo(_console())


def cmd_selftest(args: argparse.Namespace) -> int:
    selftest = importlib.import_module("sandboxmode.selftest")
    return int(selftest.main(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sbm", description="Run parsers of untrusted data in a "
                                "locked-down sandbox.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="what this machine supports")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_doctor)
    r = sub.add_parser("run", help="run MODULE:FUNC on each FILE in a fresh sandbox")
    r.add_argument("target", metavar="MODULE:FUNC")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--json", action="store_true")
    r.set_defaults(fn=cmd_run)
    pa = sub.add_parser("parse", help="parse OpenPGP keys or AppArmor policy, sandboxed")
    pa.add_argument("format", choices=["openpgp", "apparmor"])
    pa.add_argument("files", nargs="+", metavar="FILE")
    pa.add_argument("--json", action="store_true")
    pa.set_defaults(fn=cmd_parse)
    de = sub.add_parser("demo", help="the main job on embedded data, then hostile inputs")
    de.set_defaults(fn=cmd_demo)
    st = sub.add_parser("selftest", help="run the containment suite on this machine")
    st.add_argument("--json", action="store_true")
    st.add_argument("--matrix", action="store_true")
    st.set_defaults(fn=cmd_selftest)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SandboxUnavailable as e:
        print(f"sbm: sandbox unavailable: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except SandboxError as e:
        print(f"sbm: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
