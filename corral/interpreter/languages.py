"""Which kernel serves which language, and the per-execution env-var snippets for each."""

from __future__ import annotations

import json
import re
import shlex

# Language names the SDKs send -> (canonical name, Jupyter kernel names to try, in order).
LANGUAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "python": ("python", ("python3",)),
    "python3": ("python", ("python3",)),
    "bash": ("bash", ("bash",)),
    "sh": ("bash", ("bash",)),
    "javascript": ("javascript", ("jslab", "javascript")),
    "js": ("javascript", ("jslab", "javascript")),
    "typescript": ("typescript", ("tslab",)),
    "ts": ("typescript", ("tslab",)),
    "r": ("r", ("ir",)),
}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def resolve(language: str | None, installed: set[str]) -> tuple[str, str] | None:
    """(canonical language, kernel name) for `language` given the installed kernel names; None if unsupported."""
    entry = LANGUAGES.get((language or "python").strip().lower())
    if entry is None:
        return None
    for kernel in entry[1]:
        if kernel in installed:
            return entry[0], kernel
    return None


def supported(installed: set[str]) -> list[str]:
    """Canonical languages some installed kernel serves."""
    return sorted({canon for canon, kernels in LANGUAGES.values() if any(k in installed for k in kernels)})


def env_snippets(language: str, env: dict[str, str]) -> tuple[str, str] | None:
    """(set, restore) code that applies `env` for one execution and puts the previous values back; None if unknown."""
    if language == "python":
        # Inside throw-away functions, so nothing but the environment changes in the user's namespace.
        set_code = (
            "def _corral_set(env):\n"
            "    import os, sys\n"
            "    sys.__dict__['_corral_env'] = {k: os.environ.get(k) for k in env}\n"
            "    os.environ.update(env)\n"
            f"_corral_set({json.dumps(env)}); del _corral_set\n"
        )
        restore = (
            "def _corral_restore():\n"
            "    import os, sys\n"
            "    for k, v in sys.__dict__.pop('_corral_env', {}).items():\n"
            "        if v is None:\n"
            "            os.environ.pop(k, None)\n"
            "        else:\n"
            "            os.environ[k] = v\n"
            "_corral_restore(); del _corral_restore\n"
        )
        return set_code, restore
    if language == "bash":
        set_parts, restore_parts = [], []
        for k, v in env.items():
            set_parts.append(
                f'if [ -n "${{{k}+x}}" ]; then __corral_had_{k}=1; __corral_old_{k}="${k}"; '
                f"else __corral_had_{k}=0; fi; export {k}={shlex.quote(v)}"
            )
            restore_parts.append(
                f'if [ "$__corral_had_{k}" = 1 ]; then export {k}="$__corral_old_{k}"; else unset {k}; fi; '
                f"unset __corral_had_{k} __corral_old_{k}"
            )
        return "\n".join(set_parts), "\n".join(restore_parts)
    if language in ("javascript", "typescript"):
        g = 'globalThis["__corral_env"]'
        set_code = (
            f"{g} = {{}}; for (const [k, v] of Object.entries({json.dumps(env)})) "
            f"{{ {g}[k] = process.env[k]; process.env[k] = v; }}"
        )
        restore = (
            f"for (const [k, v] of Object.entries({g} || {{}})) "
            f"{{ if (v === undefined) delete process.env[k]; else process.env[k] = v; }} {g} = undefined;"
        )
        return set_code, restore
    if language == "r":
        names = "c(" + ", ".join(json.dumps(k) for k in env) + ")"
        set_code = f".corral_env <- Sys.getenv({names}, unset = NA, names = TRUE); " + "; ".join(
            f"Sys.setenv({json.dumps(k)} = {json.dumps(v)})" for k, v in env.items()
        )
        restore = (
            "for (.k in names(.corral_env)) if (is.na(.corral_env[[.k]])) Sys.unsetenv(.k) "
            "else do.call(Sys.setenv, setNames(list(.corral_env[[.k]]), .k)); rm(.corral_env, .k)"
        )
        return set_code, restore
    return None
