"""`crmsync sandbox <provider>`: each registered connector's simulated CRM, its options
generated from the connector's sandbox (also offered on `crmsync demo`)."""

import gc
import inspect
from typing import Annotated, Any

import typer
import uvicorn

from cli.output import console
from connectors.base import Sandbox, SandboxOption
from connectors.registry import sandboxes

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


def option_parameter(name: str, option: SandboxOption) -> inspect.Parameter:
    """A typer option for a sandbox option (a flag for bool, else a value)."""
    kind: Any = option.kind if option.kind is bool or option.default is not None \
        else option.kind | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                             annotation=Annotated[kind, typer.Option(f"--{name.replace('_', '-')}",
                                                                     help=option.help)])


def with_parameters(function: Any, extra: list[inspect.Parameter]) -> Any:
    """`function` (taking **options) with `extra` typer options in its signature."""
    base = [p for p in inspect.signature(function, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD]
    function.__signature__ = inspect.Signature(base + extra)
    function.__annotations__ = {**{p.name: p.annotation for p in base + extra},
                                "return": None}
    return function


def sandbox_connect_hint(sandbox: Sandbox, host: str, port: int) -> str:
    """How to connect crmsync to a sandbox on host:port."""
    url = f"http://{host}:{port}"
    config = " ".join(f"--config {k}={v}" for k, v in sandbox.config(url).items())
    secrets = " ".join(f"{k}={v}" for k, v in sandbox.secrets.items())
    return (f"Connect with {config} and the secrets {secrets}, with "
            f"CRMSYNC_ALLOW_ENDPOINTS={host}:{port} set for crmsync")


def _sandbox_command(provider: str, sandbox: Sandbox) -> Any:
    def command(
        port: Annotated[int, typer.Option()] = sandbox.default_port,
        host: Annotated[str, typer.Option()] = "127.0.0.1",
        seed: Annotated[int, typer.Option()] = 42,
        deals: Annotated[int, typer.Option()] = 2500,
        latency: Annotated[float, typer.Option(help="Seconds added to every call.")] = 0.0,
        **options: Any,
    ) -> None:
        kwargs: dict[str, Any] = {}
        for option in sandbox.options:
            kwargs.update(option.apply(options[option.name.replace("-", "_")]))
        console.print(f"{sandbox.title} on http://{host}:{port} (seed {seed}, {deals:,} "
                      f"deals). {sandbox_connect_hint(sandbox, host, port)}")
        crm = sandbox.create_app(None, seed=seed, deals=deals, latency=latency, **kwargs)
        gc.freeze()  # the dataset is long-lived: keep the collector from rescanning it
        uvicorn.run(crm, host=host, port=port, log_level="info", access_log=False)

    command.__doc__ = sandbox.title[0].upper() + sandbox.title[1:] + "."
    command.__name__ = f"sandbox_{provider}"
    return with_parameters(command, [option_parameter(o.name.replace("-", "_"), o)
                                     for o in sandbox.options])


for _provider, _sandbox in sandboxes().items():
    app.command(_provider)(_sandbox_command(_provider, _sandbox))
