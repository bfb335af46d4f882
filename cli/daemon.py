"""`edgecl daemon`: the local model behind an OpenAI-compatible API, with budgeted offloading.

edgecl daemon start --budget 0.3 --cloud openai:gpt-4o-mini   # 127.0.0.1:8745, in the background
edgecl daemon status                                          # uptime, requests, cloud calls
edgecl daemon logs -f
edgecl daemon stop
edgecl daemon install --budget 0.3    # a systemd user unit (Linux) or launchd agent (macOS)

Clients use base_url http://127.0.0.1:8745/v1 and the token in DATA_DIR/daemon/token as API key
(`edgecl daemon token` prints it). See edgecl/server.py for the API and its extensions.
"""

from __future__ import annotations

import json
import os
import sys
import time

import typer

from edgecl.cli.chat import (
    BACKEND,
    BUDGET,
    CALLS_PER_DAY,
    CLOUD,
    CLOUD_KEY_ENV,
    CLOUD_URL,
    LEARNER,
    MODEL,
    NO_LOG,
    PRICE_PER_1K,
    SPEND_PER_DAY,
    TOKENS_PER_DAY,
    Backend,
)

ADAPT_STEPS = typer.Option(10, min=1, help="DA-GRPO steps of an adaptation cycle.")

app = typer.Typer(help="Serve the local model to other apps (OpenAI API).", no_args_is_help=True)


def run(
    port: int = typer.Option(8745, help="Port on 127.0.0.1."),
    budget: float = BUDGET,
    cloud: str = CLOUD,
    cloud_url: str = CLOUD_URL,
    cloud_key_env: str = CLOUD_KEY_ENV,
    backend: Backend = BACKEND,
    learner: str = LEARNER,
    model: str = MODEL,
    max_tokens: int = typer.Option(256, min=8, help="Longest answer a request may ask for."),
    calls_per_day: int = CALLS_PER_DAY,
    tokens_per_day: int = TOKENS_PER_DAY,
    spend_per_day: float = SPEND_PER_DAY,
    price_per_1k: float = PRICE_PER_1K,
    queue: int = typer.Option(8, min=1, help="Requests that may wait for the model."),
    max_body: int = typer.Option(1 << 20, min=1024, help="Largest request body in bytes."),
    log_days: float = typer.Option(30, min=0, help="Keep logged exchanges this many days."),
    no_log: bool = NO_LOG,
    adapt_after: int = typer.Option(
        32, min=0, help="Adapt after this many new verifiable exchanges (0: never)."
    ),
    adapt_idle: float = typer.Option(120, min=0, help="...and this long (s) without a request."),
    adapt_steps: int = ADAPT_STEPS,
) -> None:
    """Serve in the foreground (what `start` runs in the background)."""
    from edgecl import daemon
    from edgecl.adapt import AdaptLoop
    from edgecl.budget import Caps
    from edgecl.chat import open_session
    from edgecl.server import Answerer, create_app

    lock = daemon.claim()  # before the model loads: a second daemon fails at once
    caps = Caps(calls_per_day, tokens_per_day, spend_per_day, price_per_1k)

    def session():
        made, adapter = open_session(
            budget, cloud, cloud_url, cloud_key_env, backend.value, learner, False, model,
            max_tokens, caps, log=not no_log, source="daemon",
        )  # fmt: skip
        print(f"edgecl daemon: {made.engine.name}, adapter {adapter or 'none (base model)'}, "
              f"budget tau {budget:g}, cloud {cloud or 'none'}", flush=True)  # fmt: skip
        return made

    answerer = Answerer(session, log_days=log_days)
    app_ = create_app(answerer, daemon.token(), max_body=max_body, queue=queue,
                      max_tokens=max_tokens)  # fmt: skip
    cycle_args = ["--budget", str(budget), "--steps", str(adapt_steps)]
    cycle_args += ["--model", model] if model else []
    adapting = None
    if adapt_after > 0 and not no_log:  # the workload is the exchange log
        adapting = AdaptLoop(learner, adapt_after, adapt_idle, cycle_args,
                             busy=lambda: answerer.in_flight > 0,
                             last_request=lambda: answerer.last_request, swap=answerer.swap,
                             log=lambda line: print(line, flush=True))  # fmt: skip
        adapting.start()
    code = 1
    try:
        daemon.serve(app_, port)
        code = 0
    except SystemExit as e:  # SIGTERM, after uvicorn's graceful shutdown
        code = e.code or 0
    except Exception as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
    finally:
        if adapting is not None:
            adapting.stop()
        answerer.close()
        lock.close()
        sys.stdout.flush()
        os._exit(code)  # MLX's threads abort the interpreter's teardown ("terminate called ...")


def start(
    ctx: typer.Context,
    port: int = typer.Option(8745, help="Port on 127.0.0.1."),
) -> None:
    """Start the daemon in the background (every `run` option applies: `start --budget 0.2`)."""
    from edgecl import daemon

    info = daemon.start(list(ctx.args), port)
    typer.echo(f"edgecl daemon started: http://127.0.0.1:{info['port']}/v1 (pid {info['pid']}); "
               "API key: edgecl daemon token")  # fmt: skip


def stop() -> None:
    """Stop the daemon (requests in flight finish first)."""
    from edgecl import daemon

    pid = daemon.stop()
    typer.echo("no daemon was running" if pid is None else f"edgecl daemon stopped (pid {pid})")


def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Uptime, requests, help requests and cloud answers, and the budget."""
    from edgecl import daemon

    info = daemon.status()
    if as_json:
        typer.echo(json.dumps(info))
    elif not info["running"]:
        typer.echo("the daemon is not running (edgecl daemon start)")
    else:
        typer.echo(f"edgecl daemon: pid {info['pid']}, http://127.0.0.1:{info['port']}/v1, "
                   f"model {info['model']}, up {info['uptime_s']:.0f} s")  # fmt: skip
        typer.echo(f"  adapter: {info.get('adapter') or 'none (the base model)'}")
        for key in ("requests_total", "help_requested_total", "cloud_answered_total",
                    "errors_total", "budget_calls_today", "budget_bucket"):  # fmt: skip
            if key in info:
                typer.echo(f"  {key.removesuffix('_total').replace('_', ' ')}: {info[key]:g}")
        last = info.get("last_adaptation")
        if last is None:
            typer.echo("  last adaptation: none yet")
        else:
            before, after = last["details"]["before"], last["details"]["after"]
            verdict = "promoted" if last["promoted"] else "rejected"
            typer.echo(f"  last adaptation: {last['finished']} on {last['exchanges']} exchanges, "
                       f"eval solved {sum(before['solved'])} -> {sum(after['solved'])} of "
                       f"{len(after['solved'])}, log-prob {before['logprob']:.3f} -> "
                       f"{after['logprob']:.3f}; version {last['candidate']} "
                       f"{verdict}")  # fmt: skip


def logs(follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing.")) -> None:
    """The daemon's log (its decisions, errors and start and stop)."""
    from edgecl import daemon

    path = daemon.home() / "daemon.log"
    if not path.is_file():
        typer.echo("no daemon log yet (edgecl daemon start)")
        return
    with path.open() as f:
        typer.echo(f.read(), nl=False)
        while follow:
            line = f.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                time.sleep(0.5)


def install(ctx: typer.Context) -> None:
    """Write a systemd user unit (Linux) or launchd agent (macOS) that runs the daemon with
    these `run` options at login, and print how to enable it."""
    import sys

    from edgecl import daemon

    where, text = daemon.service_file(list(ctx.args))
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(text)
    typer.echo(f"wrote {where}")
    if sys.platform == "darwin":
        typer.echo(f"enable it with: launchctl load -w {where}")
    else:
        typer.echo("enable it with: systemctl --user daemon-reload && "
                   "systemctl --user enable --now edgecl")  # fmt: skip


def adapt(
    learner: str = LEARNER,
    budget: float = BUDGET,
    model: str = MODEL,
    steps: int = ADAPT_STEPS,
) -> None:
    """One adaptation cycle now: DA-GRPO on the logged workload, then the gate (edgecl.adapt)."""
    from edgecl.adapt import cycle
    from edgecl.cli.learn import _Display

    progress = _Display()  # step lines, as learn prints them (into the daemon's log)
    progress.total = steps
    row = cycle(learner, budget, steps=steps, model=model, on_event=progress)
    verdict = "promoted (now current)" if row["promoted"] else "rejected (kept, not used)"
    typer.echo(f"adaptation {row['id']}: {row['exchanges']} verifiable exchanges, candidate "
               f"version {row['candidate']} {verdict}: {row['reason']}")  # fmt: skip


def token() -> None:
    """Print the API key clients use (the daemon's bearer token)."""
    from edgecl import daemon

    typer.echo(daemon.token())


app.command("run")(run)
app.command("start", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})(start)  # fmt: skip
app.command("stop")(stop)
app.command("status")(status)
app.command("logs")(logs)
app.command("token")(token)
app.command("adapt")(adapt)
app.command("install", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})(install)  # fmt: skip
