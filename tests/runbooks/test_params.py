"""Parameters: types, validation, shell-safe substitution, secrets."""

from __future__ import annotations

import subprocess

import pytest

from v4runtime.errors import RunbookError
from v4runtime.runbooks.arithmetic import arithmetic_context
from v4runtime.runbooks.loader import load_file
from v4runtime.runbooks.model import Param, Runbook, Step, Verify
from v4runtime.runbooks.params import mask, parse_assignments, resolve, substitute
from v4runtime.runbooks.schema import RunbookValidationError

from .helpers import write_runbook


def book(*params: Param) -> Runbook:
    step = Step(id="s", description="d", run="true", verify=Verify())
    return Runbook(name="t", path="runbooks/t.yml", title="T", purpose="P", params=list(params), steps=[step])


def test_hostile_value_is_one_shell_word() -> None:
    hostile = "x'; touch /tmp/pwned-$$; echo \"$(id)\" `id` *"
    params = resolve(book(Param(name="v", description="d")), {"v": hostile})
    command = substitute("printf '%s\\n' {{ v }}", params, {})
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True).stdout
    assert out == hostile + "\n"


@pytest.mark.parametrize(
    "template",
    [
        "printf '%s\\n' \"{{ v }}\"",
        "printf '%s\\n' \"pre:{{ v }}\" | cut -d: -f2-",
        "printf '%s\\n' \"$(printf '%s' {{ v }})\"",
        "printf '%s\\n' \"$(echo \"{{ v }}\")\"",
    ],
    ids=["double-quotes", "inside-word", "command-substitution", "nested-quotes"],
)
def test_hostile_value_is_literal_in_every_quoting_context(template: str) -> None:
    hostile = 'a "b" $(touch pwned) `id` \\ \'c\' ; | & $HOME'
    params = resolve(book(Param(name="v", description="d")), {"v": hostile})
    out = subprocess.run(["bash", "-c", substitute(template, params, {})], capture_output=True, text=True)
    assert out.stdout == hostile + "\n", out.stderr


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("echo '{{ v }}'", "inside single quotes"),
        ("echo `echo {{ v }}`", "inside backticks"),
        ("cat <<EOF\n{{ v }}\nEOF", "in a here-document"),
    ],
)
def test_unsafe_placeholder_positions_are_refused(template: str, problem: str) -> None:
    params = resolve(book(Param(name="v", description="d")), {"v": "x"})
    with pytest.raises(RunbookError, match=problem):
        substitute(template, params, {})


def test_types_defaults_and_constraints() -> None:
    b = book(
        Param(name="n", description="d", type="integer", default=3, minimum=1, maximum=5),
        Param(name="mode", description="d", enum=["fast", "full"], default="fast"),
        Param(name="tag", description="d", pattern="^v[0-9]+$", default="v1"),
        Param(name="flag", description="d", type="boolean", default=False),
    )
    assert resolve(b, {}).values == {"n": 3, "mode": "fast", "tag": "v1", "flag": False}
    assert resolve(b, {"n": "5", "flag": "yes"}).values["n"] == 5
    for given, message in [
        ({"n": "six"}, "not a valid integer"),
        ({"n": "9"}, "above the maximum 5"),
        ({"mode": "slow"}, "not one of: fast, full"),
        ({"tag": "1.0"}, "does not match pattern"),
        ({"flag": "maybe"}, "not a valid boolean"),
        ({"nope": "1"}, "has no parameter 'nope'"),
    ]:
        with pytest.raises(RunbookError, match=message):
            resolve(b, given)


def test_required_parameter_is_named() -> None:
    with pytest.raises(RunbookError, match=r"parameter 'host' is required \(--param host=\.\.\.\)"):
        resolve(book(Param(name="host", description="d")), {})


def test_secret_travels_in_environment_only() -> None:
    params = resolve(book(Param(name="token", description="d", secret=True)), {"token": "hunter2"})
    command = substitute("echo {{ token }}", params, {})
    assert "hunter2" not in command
    assert command == 'echo "$RB_TOKEN"'
    assert substitute('echo "Bearer {{ token }}"', params, {}) == 'echo "Bearer ${RB_TOKEN}"'
    assert params.env() == {"RB_TOKEN": "hunter2"}
    assert params.masked() == {"token": "***"}
    assert mask("got hunter2 twice: hunter2", params.secret_values()) == "got *** twice: ***"


def test_secret_value_is_not_echoed_in_errors() -> None:
    b = book(Param(name="token", description="d", secret=True, pattern="^[a-f0-9]{8}$"))
    with pytest.raises(RunbookError) as info:
        resolve(b, {"token": "not-hex-secret"})
    assert "not-hex-secret" not in str(info.value)


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(RunbookError, match="expected NAME=VALUE"):
        parse_assignments(["novalue"])


@pytest.mark.parametrize(
    "template",
    [
        "# the \"main server\nprintf '%s\\n' {{ v }}",
        "# don't panic\nprintf '%s\\n' {{ v }}",
        "printf '%s\\n' {{ v }} # also {{ v }}",
        "# note: {{ v }}\nprintf '%s\\n' {{ v }}",
        "printf '%s\\n' \"$(# it's\nprintf '%s' {{ v }})\"",
    ],
    ids=["double-quote-in-comment", "apostrophe-in-comment", "trailing-comment", "placeholder-in-comment", "comment-in-subst"],
)
def test_comments_neither_open_quotes_nor_let_a_newline_out(template: str, tmp_path) -> None:
    hostile = "x; touch pwned\ntouch pwned2 $(touch pwned3) #"
    params = resolve(book(Param(name="v", description="d")), {"v": hostile})
    out = subprocess.run(["bash", "-c", substitute(template, params, {})], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout == hostile + "\n", out.stderr
    assert list(tmp_path.iterdir()) == []


def test_comment_inside_a_heredoc_is_still_refused() -> None:
    params = resolve(book(Param(name="v", description="d")), {"v": "$(touch pwned)"})
    with pytest.raises(RunbookError, match="in a here-document"):
        substitute("cat <<EOF\n# {{ v }}\nEOF", params, {})


def test_nul_byte_in_a_value_is_refused() -> None:
    with pytest.raises(RunbookError, match="'v': 'a\\\\x00b' contains a NUL byte"):
        resolve(book(Param(name="v", description="d")), {"v": "a\0b"})


CASE_HOSTILE = "x; touch pwned\n$(touch pwned2) `touch pwned3` \"q\" 'q' \\ *"


def _run_substituted(template: str, cwd) -> subprocess.CompletedProcess[str]:
    params = resolve(book(Param(name="v", description="d")), {"v": CASE_HOSTILE})
    command = substitute(template, params, {})
    return subprocess.run(["bash", "-O", "extglob", "-c", command], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "template",
    [
        "printf '%s\\n' \"$(case a in a) printf '%s' {{ v }};; esac)\"",
        "printf '%s\\n' \"$(case a in a) printf '%s' \"{{ v }}\";; esac)\"",
        "printf '%s\\n' \"$(case a in b|a) printf '%s' {{ v }};; *) true;; esac)\"",
        "printf '%s\\n' \"$(case a in b) true;; esac; printf '%s' {{ v }})\"",
        "printf '%s\\n' \"$(case a in a) case b in b) printf '%s' {{ v }};; esac;; esac)\"",
        "printf '%s\\n' \"$(if true; then case a in a) printf '%s' {{ v }};; esac; fi)\"",
        "printf '%s\\n' \"$(case \"$(echo a)\" in 'a') printf '%s' {{ v }};; esac)\"",
        "printf '%s\\n' \"$(case a in\n  a)\n    printf '%s' {{ v }}\n    ;;\nesac)\"",
        "printf '%s\\n' \"$(case a in @(a|b)) printf '%s' {{ v }};; esac)\"",
        "printf '%s\\n' \"$(f() { case a in a) printf '%s' {{ v }};; esac; }; f)\"",
    ],
    ids=["bare", "quoted-in-body", "alternatives", "after-esac", "nested", "in-if", "quoted-subject", "multiline",
         "extglob", "in-function"],
)
def test_case_pattern_paren_does_not_close_the_command_substitution(template: str, tmp_path) -> None:
    out = _run_substituted(template, tmp_path)
    assert out.stdout == CASE_HOSTILE + "\n", out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("printf '%s\\n' \"$(function f { case a in a) printf '%s' {{ v }};; esac; }; f)\"", "'case' at offset 30"),
        ("printf '%s\\n' \"$(echo case >/dev/null; printf '%s' {{ v }})\"", "'case' at offset 22"),
        ("printf '%s\\n' \"$(printf '%s' {{ v }}; echo esac)\"", "'esac' at offset"),
        ("printf '%s\\n' \"$(printf '%s' {{ v }})", "not closed"),
        ("printf '%s\\n' $(case a in a) printf '%s' {{ v }};; )", "not closed"),
    ],
    ids=["function-keyword", "case-as-argument", "esac-as-argument", "unclosed-quote", "unclosed-case"],
)
def test_quoting_the_checker_cannot_prove_is_refused(template: str, why: str) -> None:
    params = resolve(book(Param(name="v", description="d")), {"v": "x"})
    with pytest.raises(RunbookError, match="cannot prove how placeholder {{ v }} is quoted") as info:
        substitute(template, params, {})
    assert why in str(info.value) and 'use "$RB_V" instead' in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        "printf '%s\\n' {{ v }} | cat",
        "(cd . && printf '%s\\n' \"{{ v }}\")",
        "printf '%s\\n' \"$(printf '%s' \"$(printf '%s' {{ v }})\")\"",
        "case a in a) printf '%s\\n' {{ v }};; esac",
        "(case a in (a) printf '%s\\n' {{ v }};; esac)",
        "for x in a; do printf '%s\\n' \"{{ v }}\"; done",
        "if [ \"$(echo 1)\" = 1 ]; then printf '%s\\n' {{ v }}; else echo no; fi",
        "n=$((1 + 2)); printf '%s\\n' \"${UNSET:-{{ v }}}\"",
        "x=\"$(case a in a) echo 1;; esac)\"; printf '%s\\n' \"{{ v }}\"",
        "echo case >/dev/null; printf '%s\\n' {{ v }}",
    ],
    ids=["pipe", "subshell", "nested-subst", "top-level-case", "case-in-subshell", "for", "if", "arith-default",
         "case-then-quote", "case-word-at-top"],
)
def test_ordinary_commands_are_still_accepted(template: str, tmp_path) -> None:
    out = _run_substituted(template, tmp_path)
    assert out.stdout == CASE_HOSTILE + "\n", out.stderr
    assert list(tmp_path.iterdir()) == []


def test_validation_refuses_a_command_whose_quoting_cannot_be_proven(tmp_path) -> None:
    path = write_runbook(
        tmp_path,
        "unsure",
        """
        title: T
        purpose: P
        params:
          v: {description: d}
        steps:
          - id: s
            description: d
            run: "true"
            verify: {exit_code: 0}
            rollback: echo "$(grep -c case log; echo {{ v }})"
        """,
    )
    with pytest.raises(RunbookValidationError) as info:
        load_file(path)
    problem = info.value.problems[0]
    assert (problem.step, problem.field) == ("'s' (#1)", "rollback")
    assert "cannot prove how placeholder {{ v }} is quoted" in problem.message


ARITHMETIC = [
    "if [[ {{ v }} -gt 0 ]]; then echo yes; fi",
    "[[ 0 -lt \"{{ v }}\" ]] && echo yes",
    "echo $(( {{ v }} + 1 ))",
    "(( {{ v }} > 0 )) && echo yes",
    "let n={{ v }} && echo $n",
    "declare -i k={{ v }}; echo $k",
    "a=(1 2); echo ${a[{{ v }}]}",
    "s=abcdef; echo ${s:{{ v }}}",
    "echo $[ {{ v }} ]",
]
ARITHMETIC_IDS = ["double-bracket-test", "quoted-operand", "arithmetic-expansion", "arithmetic-command", "let",
                  "declare-i", "array-subscript", "substring-offset", "old-arithmetic"]


@pytest.mark.parametrize("template", ARITHMETIC, ids=ARITHMETIC_IDS)
@pytest.mark.parametrize("hostile", ["x[$(touch pwned)]", "$(touch pwned)", "x[`touch pwned`]", "y"])
def test_arithmetic_contexts_take_only_numbers(template: str, hostile: str) -> None:
    # Quoting does not protect a value bash evaluates as a number: before, the first three ran `touch`.
    with pytest.raises(RunbookError) as info:
        substitute(template, resolve(book(Param(name="v", description="d")), {"v": hostile}), {})
    message = str(info.value)
    assert "where bash evaluates text as code" in message or "array subscript with an expansion" in message


@pytest.mark.parametrize("template", ARITHMETIC, ids=ARITHMETIC_IDS)
def test_a_number_runs_in_every_arithmetic_context(template: str) -> None:
    params = resolve(book(Param(name="v", description="d", type="integer")), {"v": "1"})
    out = subprocess.run(["bash", "-c", substitute(template, params, {})], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() in {"yes", "1", "2", "bcdef"}, out.stderr


def test_a_secret_never_stands_in_an_arithmetic_context() -> None:
    params = resolve(book(Param(name="v", description="d", type="integer", secret=True)), {"v": "7"})
    with pytest.raises(RunbookError, match=r"parameter 'v': \*\*\* stands in \$\(\( \)\)"):
        substitute("echo $(( {{ v }} + 1 ))", params, {})


def test_a_value_holding_a_subscript_expansion_is_refused_wherever_it_goes(tmp_path) -> None:
    # Stored in a variable, a value can still reach arithmetic later, where no placeholder shows it.
    later = 'x={{ v }}; echo $((x))'
    assert arithmetic_context(later, later.index("{{"), later.index("}}") + 2) is None
    hostile = "a[$(touch pwned)]"
    assert subprocess.run(["bash", "-c", f"x='{hostile}'; echo $((x))"], cwd=tmp_path, capture_output=True).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["pwned"]  # what the refusal below prevents
    with pytest.raises(RunbookError, match="array subscript with an expansion"):
        resolve(book(Param(name="v", description="d")), {"v": hostile})
    assert resolve(book(Param(name="v", description="d")), {"v": "[a-z]+$"}).values["v"] == "[a-z]+$"


def test_ordinary_commands_next_to_arithmetic_are_unaffected() -> None:
    params = resolve(book(Param(name="v", description="d")), {"v": "big world"})
    for template in ["n=$((1 + 2)); echo {{ v }}", "[[ {{ v }} == x ]] || echo {{ v }}", "printf '%s' \"${U:-{{ v }}}\"",
                     "test {{ v }} = a || echo {{ v }}", "test \"$(wc -l < {{ v }})\" -ge 3 || echo {{ v }}",
                     "[ -n {{ v }} ] && [ 1 -gt 0 ] && echo {{ v }}"]:
        assert "'big world'" in substitute(template, params, {}) or "big world" in substitute(template, params, {})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    b = book(Param(name="pct", description="d", type="number", minimum=0, maximum=100))
    with pytest.raises(RunbookError, match="is not a finite number"):
        resolve(b, {"pct": value})  # before: 'nan' passed minimum 0 and maximum 100


def test_validation_asks_for_a_numeric_type_in_arithmetic(tmp_path) -> None:
    text = """
        title: T
        purpose: P
        params:
          replicas: {description: d, default: "2"TYPE}
        steps:
          - id: scale
            description: d
            run: if [[ {{ replicas }} -gt 0 ]]; then echo "keeping {{ replicas }}"; fi
            verify: {expect: keeping}
        """
    with pytest.raises(RunbookValidationError) as info:
        load_file(write_runbook(tmp_path, "arith", text.replace("TYPE", "")))
    problem = info.value.problems[0]
    assert (problem.step, problem.field) == ("'scale' (#1)", "run")
    assert "placeholder {{ replicas }} stands in a numeric test (-gt)" in problem.message
    assert "type: integer" in problem.message
    book_ = load_file(write_runbook(tmp_path, "arith", text.replace("TYPE", ", type: integer")))
    assert book_.params[0].type == "integer"
