"""A run as a process of its own that serves its state to any number of viewers, and the views' side of it.

:mod:`~rnntui.runs.protocol`  the framed, versioned wire format (msgpack; never pickle)
:mod:`~rnntui.runs.server`    :class:`RunServer`: a trainer served on a private Unix socket
:mod:`~rnntui.runs.client`    :class:`RunClient`: what a view uses (in process, or over the socket)
:mod:`~rnntui.runs.folders`   run folders under ``$RNNTUI_HOME/runs/NAME/``: names, run.json, listing
:mod:`~rnntui.runs.host`      :func:`serve`: a run's own process (train, serve, signals, the end marked)
"""

from .client import InProcessClient, RunClient, RunEnded, RunRefused, RunUnavailable, SocketRunClient, probe
from .folders import RunEntry, RunFolder, RunFolderError, find_run, latest_live, list_runs
from .host import serve
from .protocol import PROTOCOL_VERSION, ProtocolError, RunInfo
from .server import RunAlreadyServing, RunServer, peer_allowed

__all__ = [
    "PROTOCOL_VERSION", "InProcessClient", "ProtocolError", "RunAlreadyServing", "RunClient", "RunEnded", "RunEntry",
    "RunFolder", "RunFolderError", "RunInfo", "RunRefused", "RunServer", "RunUnavailable", "SocketRunClient",
    "find_run", "latest_live", "list_runs", "peer_allowed", "probe", "serve",
]
