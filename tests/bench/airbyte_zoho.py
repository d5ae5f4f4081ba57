"""Airbyte's Zoho CRM source (airbyte-source-zoho-crm) reading a stream from the Zoho sandbox.

Runs in a virtual environment of its own, never the project's (sync_bench --airbyte):

    python3 -m venv .venv-airbyte && .venv-airbyte/bin/pip install airbyte-source-zoho-crm
    .venv-airbyte/bin/python tests/bench/airbyte_zoho.py http://127.0.0.1:PORT Deals

and prints one JSON line: records read, seconds, CPU seconds, HTTP requests and the error
that stopped it, if any. The source reads the stream as it does against Zoho (its own
paging, parsing and record messages, written to /dev/null as a destination would read
them) with four adaptations to the sandbox, none on the read path's work:

- its hosts: the sandbox instead of accounts.zoho.com and zohoapis.com;
- its API version: the sandbox speaks v8 (docs/vendors/zoho.md), the source v2, so its
  paths are v8's and it lists the module's fields, which v8 requires and v2 did not;
- module metadata: the sandbox has no /settings/modules, so the two modules are given;
- concurrency: 5 (the Free edition's; the source asks /org for the edition first).

This file imports nothing of crmsync: it runs where only the Airbyte source is installed.
"""

import io
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any


def main(sandbox: str, module: str) -> None:
    import requests
    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from source_zoho_crm import api, streams
    from source_zoho_crm.source import SourceZohoCrm

    calls = {"requests": 0}
    send = requests.Session.send

    def counted(self: Any, request: Any, **kwargs: Any) -> Any:
        calls["requests"] += 1
        return send(self, request, **kwargs)

    requests.Session.send = counted  # type: ignore[method-assign]
    api.ZohoAPI._access_url = property(lambda self: sandbox)  # type: ignore[assignment]
    api.ZohoAPI.api_url = property(lambda self: sandbox)  # type: ignore[assignment]
    given = [{"api_name": name, "module_name": name, "api_supported": True}
             for name in ("Deals", "Accounts")]
    api.ZohoAPI.modules_settings = lambda self: [dict(m) for m in given]  # type: ignore
    api.ZohoAPI.module_settings = lambda self, name: [  # type: ignore
        dict(m) for m in given if m["api_name"] == name]
    fields_settings = api.ZohoAPI._json_from_path

    def v8(self: Any, path: str, key: str, params: Any = None) -> Any:
        return fields_settings(self, path.replace("/crm/v2/", "/crm/v8/"), key, params)

    api.ZohoAPI._json_from_path = v8  # type: ignore[method-assign]
    base_params = streams.ZohoCrmStream.request_params

    def with_fields(self: Any, stream_state: Any, stream_slice: Any = None,
                    next_page_token: Any = None) -> Any:
        params = dict(base_params(self, stream_state, stream_slice, next_page_token))
        params["fields"] = ",".join(f.api_name for f in self.module.fields)[:2000]
        return params

    streams.ZohoCrmStream.request_params = with_fields  # type: ignore[method-assign]
    streams.ZohoCrmStream.path = lambda self, *a, **k: f"/crm/v8/{self.module.api_name}"  # type: ignore

    config = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
              "refresh_token": "sandbox-refresh-token", "dc_region": "US",
              "environment": "Production", "max_concurrent_requests": 5}
    source = SourceZohoCrm()
    name = next(s.name for s in source.streams(config) if s.module.api_name == module)
    calls["requests"] = 0  # the read below discovers the streams again, as Airbyte does
    catalog = {"streams": [{"stream": {"name": name, "json_schema": {},
                                       "supported_sync_modes": ["full_refresh"]},
                            "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]}
    folder = os.environ.get("TMPDIR", "/tmp")
    config_path, catalog_path = f"{folder}/airbyte-zoho-config.json", f"{folder}/airbyte-cat.json"
    with open(config_path, "w") as out:
        json.dump(config, out)
    with open(catalog_path, "w") as out:
        json.dump(catalog, out)
    entrypoint = AirbyteEntrypoint(source)
    parsed = entrypoint.parse_args(["read", "--config", config_path, "--catalog", catalog_path])
    records, error = 0, None
    cpu, started = time.process_time(), time.perf_counter()
    sink = io.StringIO()
    try:
        for message in _messages(entrypoint.run(parsed)):
            if message.startswith(RECORD):
                records += 1
            else:
                error = error or _error(message)
            sink.write(message)  # what a destination would read
            sink.seek(0)
            sink.truncate()
    except Exception as exc:  # the source stopped: report how far it got
        error = error or f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps({"records": records, "seconds": time.perf_counter() - started,
                      "cpu": time.process_time() - cpu, "requests": calls["requests"],
                      "error": error}))


RECORD = '{"type": "RECORD"'


def _error(message: str) -> str | None:
    """The text of an ERROR log or trace message of the Airbyte protocol, else None."""
    try:
        body = json.loads(message)
    except ValueError:
        return None
    log = body.get("log") or {}
    trace = (body.get("trace") or {}).get("error") or {}
    text = log.get("message") if log.get("level") == "ERROR" else trace.get("message")
    return str(text)[:300] if text else None


def _messages(output: Iterator[str] | Mapping[str, Any]) -> Iterator[str]:
    yield from output  # type: ignore[misc]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "Deals")
