"""``edgecore tui`` / ``kubeedge-tui``: a terminal view of one edge node, read from edgecore's status socket.

Owns the Textual application: a header (node, cloud link state, versions), tabs (Overview, Pods, Devices, Link,
Events) with row-cursor tables, a ``/`` filter, detail screens on Enter (a pod's containers and recent Docker
log lines, a device's twins), ``?`` help and ``q`` quit. It runs in its own process on asyncio and only talks
to edgecore through :class:`~kubeedge.tui.client.StatusClient`; it never imports edge code.

Invariants: tables are updated in place (cells change, rows are added or removed by key; a table is rebuilt only
when its set of rows or its filter changes), so refreshes do not flicker and the cursor stays on its row; every
time shown is computed from the injected ``clock``. Failures: an unreachable or incompatible edgecore turns the
header red with the reason, keeps the last data on screen and retries every ``interval``; nothing raises out of
a refresh.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from kubeedge.kit import status as s
from kubeedge.kit.config.edgecore import DEFAULT_STATUS_SOCKET
from kubeedge.tui import format as fmt
from kubeedge.tui.client import StatusClient, StatusUnavailable
from kubeedge.tui.logs import ContainerLog, LogSource, docker_logs

DEFAULT_INTERVAL: Final = 2.0
"""Seconds between refreshes: live enough to watch a pod restart, light on a small edge CPU."""

POD_COLUMNS: Final = ("NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP")
DEVICE_COLUMNS: Final = ("NAME", "NAMESPACE", "MODEL", "PROTOCOL", "STATE", "TWINS", "REPORTED")
EVENT_COLUMNS: Final = ("AGE", "LEVEL", "SOURCE", "REASON", "OBJECT", "MESSAGE")
LINK_COLUMNS: Final = ("FIELD", "VALUE")
CONTAINER_COLUMNS: Final = ("NAME", "STATE", "READY", "RESTARTS", "LAST TERMINATION", "PROBES")
TWIN_COLUMNS: Final = ("PROPERTY", "EXPECTED", "ACTUAL", "SYNC", "REPORTED")

TABS: Final = ("overview", "pods", "devices", "link", "events")

ANSI_THEME: Final = "ansi-dark"
"""Textual theme drawn with the terminal's 16 ANSI colours, for plain terminals (and ``--ansi``)."""

HELP_TEXT: Final = """\
[b]kubeedge-py edge status[/b]

  [b]1-5[/b]        switch tabs (Overview, Pods, Devices, Link, Events)
  [b]up/down[/b]    move the row cursor
  [b]enter[/b]      details: a pod's containers and logs, a device's twins
  [b]/[/b]          filter the rows of the current table (escape clears)
  [b]r[/b]          refresh now
  [b]?[/b]          this help
  [b]q[/b]          quit (escape closes a detail or help screen)

Data comes from edgecore's status socket and refreshes every few
seconds; when edgecore is unreachable the header turns red and the
last data stays on screen while the TUI retries.
"""


def _severity_style(severity: s.Severity) -> str:
    return {s.Severity.ERROR: "bold red", s.Severity.WARNING: "yellow"}.get(severity, "")


class KeyedTable(DataTable[Any]):
    """A row-cursor DataTable fed with keyed rows: unchanged rows stay, changed cells are updated in place."""

    def __init__(self, columns: Sequence[str], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns = tuple(columns)
        self._rows_now: dict[str, tuple[Any, ...]] = {}
        self.filter_text = ""
        self.rebuilds = 0
        """Times the rows were rebuilt (membership or filter changed); plain refreshes only update cells."""

    def on_mount(self) -> None:
        for name in self._columns:
            self.add_column(name, key=name)

    def matches(self, cells: tuple[Any, ...]) -> bool:
        """Whether a row passes the filter (case-insensitive substring of any cell)."""
        needle = self.filter_text.lower()
        return not needle or any(needle in str(c).lower() for c in cells)

    def set_rows(self, rows: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Show ``rows`` ((key, cells) in display order) that pass the filter."""
        wanted = [(k, cells) for k, cells in rows if self.matches(tuple(str(c) for c in cells))]
        keys = [k for k, _ in wanted]
        if keys != list(self._rows_now):
            cursor_key = self._cursor_key()
            self.rebuilds += 1
            self.clear()
            for key, cells in wanted:
                self.add_row(*cells, key=key)
            if cursor_key in keys:
                self.move_cursor(row=keys.index(cursor_key), animate=False)
        else:
            for key, cells in wanted:
                old = self._rows_now[key]
                for column, value, before in zip(self._columns, cells, old, strict=True):
                    if value != before:
                        self.update_cell(key, column, value)
        self._rows_now = dict(wanted)

    def _cursor_key(self) -> str | None:
        if not self._rows_now or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        return list(self._rows_now)[self.cursor_row]

    def selected_key(self) -> str | None:
        """Key of the row under the cursor."""
        return self._cursor_key()


class HelpScreen(ModalScreen[None]):
    """Key bindings and what the TUI shows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="modal-box"):
            yield Static(HELP_TEXT, id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class PodScreen(ModalScreen[None]):
    """A pod's containers and the last lines of their Docker logs."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, pod: s.PodStatus, now: float, logs: LogSource | None) -> None:
        super().__init__()
        self.pod = pod
        self.now = now
        self.logs = logs

    def compose(self) -> ComposeResult:
        pod = self.pod
        with Vertical(classes="modal-box"):
            yield Static(
                Text.assemble(
                    (f"pod {pod.namespace}/{pod.name}", "bold"),
                    f"  {fmt.pod_status_text(pod)}  uid {pod.uid}",
                ),
                classes="title",
            )
            if pod.message:
                yield Static(pod.message, classes="message")
            yield KeyedTable(CONTAINER_COLUMNS, id="containers")
            yield VerticalScroll(Static("reading logs from Docker…", id="log-text"), id="log-box")

    def on_mount(self) -> None:
        table = self.query_one("#containers", KeyedTable)
        table.set_rows([(c.name, fmt.container_row(c, self.now)) for c in self.pod.containers])
        if self.logs is None:
            self.query_one("#log-text", Static).update("log lines are not available here")
        else:
            self._load_logs()

    @work(thread=True, exclusive=True)
    def _load_logs(self) -> None:
        assert self.logs is not None
        result = self.logs(self.pod.uid)
        self.app.call_from_thread(self._show_logs, result)

    def _show_logs(self, result: list[ContainerLog]) -> None:
        text = Text()
        for entry in result:
            text.append(f"── {entry.container} ──\n", style="bold")
            if entry.error:
                text.append(entry.error + "\n", style="yellow")
            for line in entry.lines:
                text.append(line + "\n")
        self.query_one("#log-text", Static).update(text)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class DeviceScreen(ModalScreen[None]):
    """A device's twins: what the cloud expects and what the device reports."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, device: s.DeviceStatus, now: float) -> None:
        super().__init__()
        self.device = device
        self.now = now

    def compose(self) -> ComposeResult:
        d = self.device
        with Vertical(classes="modal-box"):
            yield Static(
                Text.assemble(
                    (f"device {d.namespace}/{d.name or d.id}", "bold"),
                    f"  {d.state}  model {d.model or '-'}  {d.protocol or '-'}  "
                    f"reported {fmt.age(d.last_report, self.now)} ago",
                ),
                classes="title",
            )
            yield KeyedTable(TWIN_COLUMNS, id="twins")

    def on_mount(self) -> None:
        self.query_one("#twins", KeyedTable).set_rows(
            [(t.name, fmt.twin_row(t, self.now)) for t in self.device.twins]
        )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class EdgeStatusApp(App[None]):
    """The edge status TUI. ``clock`` (wall time) and ``logs`` are injectable for tests."""

    TITLE = "kubeedge-py edge status"
    CSS = """
    #header { height: 1; background: $primary; color: $text; padding: 0 0 0 1; }
    #header.offline { background: red; color: white; text-style: bold; }
    #banner { height: auto; padding: 0 1; color: $error; display: none; }
    #banner.shown { display: block; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    EdgeStatusApp > Screen { overflow: hidden; }
    #tabs { height: 1fr; }
    #tabs TabPane { height: 1fr; padding: 0; }
    KeyedTable { height: 1fr; }
    #overview-text { padding: 0 1; }
    .modal-box { width: 96%; height: 90%; border: round $primary; background: $surface; padding: 0 1; }
    ModalScreen { align: center middle; }
    .title { height: auto; }
    .message { color: $warning; height: auto; }
    #containers, #twins { height: auto; max-height: 12; }
    #log-box { height: 1fr; border-top: solid $primary; }
    #help-box { width: 72; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('pods')", "Pods", show=False),
        Binding("3", "tab('devices')", "Devices", show=False),
        Binding("4", "tab('link')", "Link", show=False),
        Binding("5", "tab('events')", "Events", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self,
        socket_path: str = DEFAULT_STATUS_SOCKET,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
        logs: LogSource | None = docker_logs,
        ansi: bool | None = None,
    ) -> None:
        super().__init__()
        self.ansi = ansi
        """Use the terminal's own 16 ANSI colours: ``None`` decides from the terminal (16-colour ones get them)."""
        self.client = StatusClient(socket_path)
        self.interval = interval
        self.clock = clock
        self.logs = logs
        self.snapshot: s.Snapshot | None = None
        """The last snapshot read (kept while edgecore is unreachable)."""
        self.error: str | None = None
        """Why the last refresh failed, ``None`` when it worked."""
        self.refreshes = 0
        """Completed refresh attempts (successful or not), for tests."""

    # --- layout ----------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="banner")
        with TabbedContent(initial="overview", id="tabs"):
            with TabPane("Overview", id="overview"):
                yield VerticalScroll(Static(id="overview-text"))
            with TabPane("Pods", id="pods"):
                yield KeyedTable(POD_COLUMNS, id="pods-table")
            with TabPane("Devices", id="devices"):
                yield KeyedTable(DEVICE_COLUMNS, id="devices-table")
            with TabPane("Link", id="link"):
                yield KeyedTable(LINK_COLUMNS, id="link-table")
            with TabPane("Events", id="events"):
                yield KeyedTable(EVENT_COLUMNS, id="events-table")
        # Disabled while hidden, so that it never takes the focus (and the keys) from the tables.
        yield Input(
            placeholder="filter rows (enter: back to table, escape: clear)", id="filter", disabled=True
        )
        yield Footer()

    @property
    def _main(self) -> Screen[Any]:
        # The tabs live on the first screen; App.query_one would search a detail or help screen on top of it.
        return self.screen_stack[0]

    def on_mount(self) -> None:
        ansi = self.ansi if self.ansi is not None else self.console.color_system in ("standard", "windows")
        if ansi:
            self.theme = ANSI_THEME
        self._render_header()
        self._main.query_one("#overview-text", Static).update("connecting to edgecore…")
        self.action_refresh_now()
        self.set_interval(self.interval, self.action_refresh_now)

    # --- refresh ---------------------------------------------------------------------------------------------
    def action_refresh_now(self) -> None:
        """Read the status socket now (a refresh already under way is replaced)."""
        self._refresh()

    @work(exclusive=True, group="refresh")
    async def _refresh(self) -> None:
        try:
            snap = await self.client.get(s.Snapshot)
        except StatusUnavailable as exc:
            self.error = str(exc)
        except Exception as exc:  # never a traceback on the operator's terminal: show it and retry
            self.error = f"unexpected error reading the status socket: {type(exc).__name__}: {exc}"
        else:
            self.error = None
            self.snapshot = snap
        self.refreshes += 1
        if not self.is_running or not self.screen_stack:
            return
        try:
            self._render_all()
        except NoMatches:
            # A refresh that completes while the app shuts down finds its widgets gone; nothing to show.
            return

    def _render_all(self) -> None:
        self._render_header()
        banner = self._main.query_one("#banner", Static)
        if self.error is not None:
            banner.update(f"{self.error}\nretrying every {self.interval:g} s")
            banner.add_class("shown")
        else:
            banner.remove_class("shown")
        snap = self.snapshot
        if snap is None:
            self._main.query_one("#overview-text", Static).update(
                Text("edgecore is not reachable; no status yet.", style="bold red")
            )
            return
        now = self.clock()
        self._main.query_one("#overview-text", Static).update(self._overview(snap, now))
        self._main.query_one("#pods-table", KeyedTable).set_rows(
            [(p.uid, fmt.pod_row(p, now)) for p in snap.pods]
        )
        self._main.query_one("#devices-table", KeyedTable).set_rows(
            [(d.id, fmt.device_row(d, now)) for d in snap.devices]
        )
        self._main.query_one("#link-table", KeyedTable).set_rows(
            [(name, (name, value)) for name, value in fmt.link_rows(snap.link, now)]
        )
        rows: list[tuple[str, tuple[Any, ...]]] = []
        seen: dict[str, int] = {}
        for e in reversed(snap.events):  # newest first on screen
            base = f"{e.at!r}|{e.source}|{e.reason}|{e.object}"
            seen[base] = seen.get(base, 0) + 1
            cells = fmt.event_row(e, now)
            styled = (*cells[:1], Text(cells[1], style=_severity_style(e.severity)), *cells[2:])
            rows.append((f"{base}|{seen[base]}", styled))
        self._main.query_one("#events-table", KeyedTable).set_rows(rows)

    def _render_header(self) -> None:
        header = self._main.query_one("#header", Static)
        snap = self.snapshot
        now = self.clock()
        text = Text()
        text.append(snap.node.name if snap is not None else "node unknown", style="bold")
        text.append(" │ ")
        offline = False
        if self.error is not None:
            text.append("EDGECORE UNREACHABLE", style="bold")
            offline = True
        elif snap is not None:
            link = snap.link
            since = f" {fmt.duration(now - link.since)}" if link.since is not None else ""
            if link.state is s.LinkState.CONNECTED:
                text.append(f"cloud connected{since}", style="bold")
            elif link.state is s.LinkState.DISABLED:
                text.append("cloud link disabled")
            elif link.state is s.LinkState.UNKNOWN:
                text.append("cloud link not reported yet")
            else:
                retrying = ", reconnecting" if link.state is s.LinkState.CONNECTING else ""
                text.append(f"CLOUD OFFLINE{since}{retrying}", style="bold")
                offline = True
        if snap is not None:
            text.append(f" │ kubeedge-py {snap.node.kubeedge_py_version}")
            if snap.node.edgecore_version:
                text.append(f" (edgecore {snap.node.edgecore_version})")
        header.update(text)
        header.set_class(offline, "offline")

    def _overview(self, snap: s.Snapshot, now: float) -> Text:
        out = Text()

        def line(label: str, value: str | Text, style: str = "") -> None:
            out.append(f"{label:<12}", style="bold")
            out.append(value if isinstance(value, Text) else Text(value, style=style))
            out.append("\n")

        node = snap.node
        line(
            "Node",
            f"{node.name}  {node.node_ip or ''}  up {fmt.age(node.started_at, now)}".replace("  up", " up"),
        )
        conditions = Text()
        for c in node.conditions:
            healthy = (c.type == "Ready") == (c.status is s.ConditionStatus.TRUE)
            conditions.append(f"{c.type}={c.status} ", style="" if healthy else "bold red")
        line("Conditions", conditions if node.conditions else Text("-"))
        link = snap.link
        link_style = "" if link.state in (s.LinkState.CONNECTED, s.LinkState.DISABLED) else "bold red"
        since = f" for {fmt.duration(now - link.since)}" if link.since is not None else ""
        line("Cloud", f"{link.state}{since}  {link.server or '-'}  reconnects {link.reconnects}", link_style)
        cert = link.certificate
        if cert.not_after is not None:
            left = cert.not_after - now
            line(
                "Certificate",
                f"expires {fmt.timestamp(cert.not_after)}"
                + (f" (in {fmt.duration(left)})" if left > 0 else " (EXPIRED)"),
                "bold red" if left < 7 * 86400 else "",
            )
        elif cert.error:
            line("Certificate", f"unreadable: {cert.error}", "yellow")
        running = sum(p.phase == "Running" for p in snap.pods)
        restarts = sum(p.restarts for p in snap.pods)
        not_ready = [p.name for p in snap.pods if not p.ready and p.phase != "Succeeded"]
        pods = f"{len(snap.pods)} ({running} running, {restarts} restarts)"
        line("Pods", pods + (f"  not ready: {', '.join(not_ready[:3])}" if not_ready else ""))
        online = sum(d.state is s.DeviceState.ONLINE for d in snap.devices)
        unsynced = sum(not t.in_sync for d in snap.devices for t in d.twins)
        line("Devices", f"{len(snap.devices)} ({online} online, {unsynced} twins out of sync)")
        mqtt = snap.mqtt
        mqtt_state = "connected" if mqtt.connected else ("disconnected" if mqtt.enabled else "disabled")
        line(
            "MQTT",
            f"{mqtt.mode or '-'} {mqtt.broker or '-'}  {mqtt_state}  in {mqtt.messages_in} out {mqtt.messages_out}",
            "" if mqtt.connected or not mqtt.enabled else "yellow",
        )
        meta = snap.meta
        outbox = "-" if meta.outbox is None else str(meta.outbox)
        acks = "-" if meta.pending_acks is None else str(meta.pending_acks)
        line(
            "MetaManager", f"db {fmt.byte_size(meta.db_bytes)}  pending acks {acks}  queued upstream {outbox}"
        )
        warnings = [e for e in snap.events if e.severity is not s.Severity.INFO][-4:]
        out.append("\nRecent warnings\n", style="bold")
        if not warnings:
            out.append("  none\n")
        for e in reversed(warnings):
            out.append(f"  {fmt.age(e.at, now):>6} ", style="")
            out.append(f"{e.reason}", style=_severity_style(e.severity))
            out.append(f" {e.object} {e.message}\n" if e.object else f" {e.message}\n")
        if snap.truncated:
            out.append(f"\n(lists cut to fit: {', '.join(snap.truncated)})\n", style="yellow")
        return out

    # --- actions ---------------------------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        """Switch to ``tab``."""
        self._main.query_one("#tabs", TabbedContent).active = tab
        self._focus_table()

    def _current_table(self) -> KeyedTable | None:
        active = self._main.query_one("#tabs", TabbedContent).active
        if active == "overview":
            return None
        return self._main.query_one(f"#{active}-table", KeyedTable)

    def _focus_table(self) -> None:
        table = self._current_table()
        if table is not None:
            table.focus()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        filt = self._main.query_one("#filter", Input)
        table = self._current_table()
        filt.value = table.filter_text if table is not None else ""
        if not filt.value:
            self._hide_filter()
        self._focus_table()

    def action_help(self) -> None:
        """Show the help screen."""
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        """Open the filter box for the current table."""
        table = self._current_table()
        if table is None:
            self.notify("the Overview has nothing to filter; pick a table tab (2-5)", timeout=3)
            return
        filt = self._main.query_one("#filter", Input)
        filt.value = table.filter_text
        filt.add_class("shown")
        filt.disabled = False
        filt.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self._current_table()
        if table is not None and table.filter_text != event.value:
            table.filter_text = event.value
            self._render_all()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            self._hide_filter()
        self._focus_table()

    def action_clear_filter(self) -> None:
        """Clear and hide the filter box."""
        self._main.query_one("#filter", Input).value = ""
        self._hide_filter()
        self._focus_table()

    def _hide_filter(self) -> None:
        filt = self._main.query_one("#filter", Input)
        filt.remove_class("shown")
        filt.disabled = True

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        snap = self.snapshot
        key = event.row_key.value
        if snap is None or key is None:
            return
        if event.data_table.id == "pods-table":
            for pod in snap.pods:
                if pod.uid == key:
                    self.push_screen(PodScreen(pod, self.clock(), self.logs))
        elif event.data_table.id == "devices-table":
            for device in snap.devices:
                if device.id == key:
                    self.push_screen(DeviceScreen(device, self.clock()))
        elif event.data_table.id == "events-table":
            # The table cuts long messages at the screen edge; Enter shows the whole event.
            cells = event.data_table.get_row(event.row_key)
            self.notify(f"{cells[3]} {cells[4]}\n{cells[5]}", title=f"{cells[1]} from {cells[2]}", timeout=8)


def build_parser(prog: str = "kubeedge-tui") -> argparse.ArgumentParser:
    """Arguments of the TUI (shared by ``kubeedge-tui`` and ``edgecore tui``)."""
    parser = argparse.ArgumentParser(prog=prog, description="Terminal view of this edge node's status.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the TUI's options to ``parser``."""
    parser.add_argument(
        "--socket",
        default=None,
        metavar="PATH",
        help=f"edgecore's status socket, modules.statusServer.socketPath (default: {DEFAULT_STATUS_SOCKET})",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between refreshes (default: {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument(
        "--ansi",
        action="store_true",
        help="draw with the terminal's 16 ANSI colours (automatic on 16-colour terminals)",
    )


def run(socket_path: str, interval: float, *, ansi: bool = False) -> int:
    """Run the TUI until the operator quits; returns the exit code."""
    EdgeStatusApp(socket_path, interval=interval, ansi=True if ansi else None).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubeedge-tui`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.interval > 0:
        parser.error(f"--interval must be a positive number of seconds, got {args.interval:g}")
    return run(args.socket or DEFAULT_STATUS_SOCKET, args.interval, ansi=args.ansi)


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["EdgeStatusApp", "add_arguments", "build_parser", "main", "run"]
