"""A whole facility on one machine, set up the way a real one is, fed by synthetic crowds.

Every part is the real one, run as its own process:

1. ``pintu registry serve``, with an operator account and a population seeded through the
   registry's CSV import; the simulated visitors' passes are issued by its signing key;
2. the facility requested by its PIC, verified by the operator, activated (which gives the
   hub its token) and given its doors, all through the registry's API;
3. the facility's Mosquitto configured by the provisioning tools (no anonymous clients, a
   password for the hub and each node, per-node ACLs), each door node enrolled through
   :func:`provisioning.enroll.enroll` and run from its bundle;
4. ``pintu hub serve`` syncing statuses and the trust list from the registry and pushing
   visits to it, with a staff account for the dashboard;
5. one ``pintu node run`` per door, its camera a synthetic scene of visitors holding up
   their passes, its GPIO on gpiozero's mock pins. The entrances see anyone of the
   population; the exits only people the hub counted in (:mod:`pintu.demo_inside`), and
   people stay a while, so the building fills up to its capacity and the entrances refuse.

While it runs, somebody's status changes at the registry every minute and a half, so the
doors refuse a pass that turned black after the hub's next sync, and the demo asks the
registry's tracing where that person was and whom they met. Ctrl-C stops every process,
also when it reaches only ``make`` (see :func:`watch_make`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click
import numpy as np

from pintu import demo_config
from pintu.commands import hub as hub_commands
from pintu.demo_config import DemoError as DemoError  # re-exported for callers
from pintu.demo_config import Person
from pintu.demo_inside import InsideTracker
from pintu.demo_phones import PhoneVisitors
from pintu.demo_registry import (
    DoorRequest,
    FacilityRequest,
    RegistryCallError,
    RegistryOperator,
    open_registry,
)
from protocol.passes import Pass, parse
from protocol.poster import door_address
from protocol.status import Status
from provisioning import hubdoors
from provisioning.broker import HUB_PASSWORD
from provisioning.enroll import Enrolment, EnrolRequest, enroll
from provisioning.errors import ProvisioningError
from provisioning.inventory import Facility, init_fleet
from provisioning.mosquitto import BrokerError, Mosquitto, free_port, port_open

logger = logging.getLogger(__name__)

# Marks a directory as the demo's own, so a second run may clear it and no other.
MARKER = ".pintu-demo"
OPERATOR = "operator"
STAFF = "admin"
# The exit doors' visitors per minute, as a share of the entrances': people stay a while.
EXIT_SHARE = 0.35
INSIDE_EVERY_S = 2.0  # how often the exits' list of people inside is brought up to date
PIC_EMAIL = "pic@demo-mall.example"


class Interrupted(DemoError):
    """Ctrl-C (or SIGTERM) came while the demo was starting."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    entries: int = 2
    exits: int = 1
    capacity: int = 30
    population: int = 200
    visitors_per_minute: float = 20.0
    web_port: int | None = None
    registry_port: int | None = None
    sync_interval_s: float = 5.0
    # Long enough apart that each change's alerts can be read before the next.
    status_change_s: float = 90.0
    seed: int = 2021
    # Visitors who scan the doors' posters with their phones (0: none).
    phones: int = 4


@dataclass
class Secrets:
    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    staff_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    pic_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))


def _port(wanted: int | None, usual: int) -> int:
    """The given port, else the usual one when it is free, else any free one."""
    if wanted:
        return wanted
    return usual if not port_open("127.0.0.1", usual) else free_port()


def _running_pid(marker: Path) -> int | None:
    """The pid a demo's marker names, when that process still runs."""
    try:
        pid = int(marker.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # somebody else's process: running
    return pid


def _write_secret(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")
    return path


class Demo:
    def __init__(
        self,
        options: DemoOptions,
        say: Callable[[str], None] = logger.info,
        stopping: threading.Event | None = None,
    ) -> None:
        self.options = options
        self.say = say
        self.stopping = stopping or threading.Event()
        self.workdir = options.workdir.resolve()
        self.doors = demo_config.doors_of(options.entries, options.exits)
        self.secrets = Secrets()
        self.rng = np.random.default_rng(options.seed)
        self.people: list[Person] = []
        self.web_port = _port(options.web_port, 8080)
        self.registry_port = _port(options.registry_port, 8090)
        self.broker = Mosquitto(
            self.workdir / "broker-run",
            free_port(),
            config_file=self.workdir / "broker" / "mosquitto.conf",
        )
        self.operator = RegistryOperator(self.registry_url)
        self.facility_id = ""
        self.enrolments: list[Enrolment] = []
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._steps = 0
        self._changes = 0
        self._example: Person | None = None
        self.passes: dict[str, str] = {}  # subject (hex) -> pass text
        self.subjects: dict[str, str] = {}  # NIK -> subject (hex)
        self.inside: InsideTracker | None = None
        self.phones: PhoneVisitors | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def step(self, text: str) -> None:
        if self.stopping.is_set():
            raise Interrupted("stopped while starting")
        self._steps += 1
        self.say(f"[{self._steps}] {text}")

    # -- the whole start-up --------------------------------------------------------------

    def start(self) -> None:
        self.fresh_workdir()
        self.step(f"work directory {self.workdir}")
        self.start_registry()
        self.seed_registry()
        self.register_facility()
        self.provision_broker()
        self.start_broker()
        self.start_hub()
        # The nodes need only the broker: they start while the hub does, and journal
        # whatever they decide until the hub acks it.
        self.start_nodes()
        self.wait_http(f"{self.url}/healthz", "the hub")
        self.step(f"hub answering at {self.url}")
        self.start_phones()

    def start_phones(self) -> None:
        """A few visitors who scan the doors' posters with their phones."""
        if self.options.phones <= 0:
            return
        self.phones = PhoneVisitors(
            self.registry_url,
            self.operator,
            self.facility_id,
            [d.door_id for d in self.doors if d.direction == "entry"],
            [d.door_id for d in self.doors if d.direction == "exit"],
            self.rng,
            count=self.options.phones,
        )
        self.phones.start()
        self.step(f"{self.options.phones} visitors check in and out with their phones")

    def poster_address(self, door_id: str) -> str:
        """What the door's poster's QR code opens (``protocol.poster.door_address``)."""
        return door_address(self.registry_url, self.facility_id, door_id)

    def fresh_workdir(self) -> None:
        """An empty work directory: a second run starts over, with new keys and accounts."""
        work = self.workdir
        marker = work / MARKER
        if work.exists() and any(work.iterdir()):
            if not marker.exists():
                raise DemoError(f"{work} is not empty and not a demo's; give another --workdir")
            owner = _running_pid(marker)
            if owner is not None:
                raise DemoError(
                    f"another demo (pid {owner}) is running in {work}: stop it first, or "
                    "give another --workdir"
                )
            shutil.rmtree(work)
        (work / "logs").mkdir(parents=True)
        # The pid tells a second demo started meanwhile that this directory is in use.
        marker.write_text(f"{os.getpid()}\n", encoding="utf-8")

    def start_registry(self) -> None:
        directory = self.workdir / "registry"
        directory.mkdir()
        config_path = directory / "registry.toml"
        config_path.write_text(demo_config.registry_config(self.registry_port), encoding="utf-8")
        self.people = demo_config.population(self.options.population, self.rng)
        csv_path = self.workdir / "people.csv"
        csv_path.write_text(demo_config.people_csv(self.people), encoding="utf-8")
        # The service starts after the keys are made, so that only one process makes them.
        registry = open_registry(config_path)
        try:
            # What `pintu registry add-operator` and `pintu registry import-csv` do; the
            # import runs while the service starts, as it may beside a running registry.
            registry.add_operator(OPERATOR, self.secrets.operator_password)
            self._spawn("registry", "-v", "registry", "serve", "--config", str(config_path))
            with csv_path.open(encoding="utf-8", newline="") as fh:
                report = registry.import_csv(fh, "demo:seed")
        finally:
            registry.close()
        if report.rejected:
            raise DemoError(f"the registry rejected {report.rejected} people: {report.errors[:3]}")
        self.step(
            f"registry: operator {OPERATOR!r} added, {report.created} people imported from "
            f"{csv_path.name}"
        )
        self.wait_http(f"{self.registry_url}/api/v1/health", "the registry")
        self.step(f"registry serving at {self.registry_url}")

    def seed_registry(self) -> None:
        self.operator.login(OPERATOR, self.secrets.operator_password)
        codes = [self.operator.issue_pass(p.nik) for p in self.people]
        for person, code in zip(self.people, codes, strict=True):
            issued = parse(code)
            if isinstance(issued, Pass):
                self.passes[issued.subject_hex] = code
                self.subjects[person.nik] = issued.subject_hex
        (self.workdir / "visitors.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
        (self.workdir / "trust.json").write_bytes(self.operator.trust())
        (self.workdir / "list-keys.json").write_bytes(self.operator.list_keys())
        self.step(f"{len(codes)} passes issued for the simulated visitors with its signing key")

    def register_facility(self) -> None:
        request = FacilityRequest(
            name="Demo Mall",
            address="Jl. Demo Raya 1, Jakarta",
            type="mall",
            capacity=self.options.capacity,
            pic_name="Dewi Lestari",
            pic_email=PIC_EMAIL,
            pic_password=self.secrets.pic_password,
        )
        # Every door has its node's camera and a poster a phone may scan as well.
        doors = [DoorRequest(d.door_id, d.name, d.registry_direction, "both") for d in self.doors]
        active = self.operator.register_facility(request, doors)
        self.facility_id = active.facility_id
        _write_secret(self.workdir / "hub" / "registry-token", active.hub_token)
        self.step(
            f"facility {self.facility_id} requested, verified and activated at the registry, "
            f"{len(doors)} doors added; hub token issued"
        )

    def provision_broker(self) -> None:
        broker_dir = self.workdir / "broker"
        port = self.broker.port
        state = self.workdir / "broker-state"
        state.mkdir()
        # What `pintu provision broker init` does.
        init_fleet(
            broker_dir,
            [Facility(id=self.facility_id, name="Demo Mall")],
            settings={
                "listen": "127.0.0.1",
                "port": port,
                "persistence_dir": state,
                # Started as root, Mosquitto would drop to `mosquitto`, which cannot read
                # this directory; as anyone else this changes nothing.
                "run_as": pwd.getpwuid(os.geteuid()).pw_name,
            },
        )
        # What `pintu provision node enroll` does, before the broker runs (no reload).
        for door in self.doors:
            request = EnrolRequest(
                facility_id=self.facility_id,
                door_id=door.door_id,
                direction=door.direction,  # type: ignore[arg-type]  # entry | exit
                broker=f"127.0.0.1:{port}",
                hub_url=self.url,
                door_name=door.name,
                node_id=door.node_id,
                trust=self.workdir / "trust.json",
                list_keys=self.workdir / "list-keys.json",
            )
            self.enrolments.append(enroll(broker_dir, request, self.workdir / "bundles"))
        nodes = ", ".join(e.record.node_id for e in self.enrolments)
        self.step(f"broker configured (auth and ACLs on); nodes enrolled: {nodes}")

    def start_broker(self) -> None:
        self.broker.start()
        self.step(f"broker at mqtts://{self.broker.host}:{self.broker.port} (TLS, facility CA)")

    def start_hub(self) -> None:
        from provisioning.inventory import open_fleet

        broker_dir = self.workdir / "broker"
        with open_fleet(broker_dir) as fleet:
            hub_user = fleet.inventory.hub.username
            records = fleet.nodes(facility_id=self.facility_id)
        hub_dir = self.workdir / "hub"
        hub_toml = hub_dir / "hub.toml"
        settings = demo_config.HubSettings(
            workdir=hub_dir,
            web_port=self.web_port,
            broker_port=self.broker.port,
            mqtt_username=hub_user,
            mqtt_password_file=broker_dir / HUB_PASSWORD,
            registry_url=self.registry_url,
            registry_token_file=hub_dir / "registry-token",
            sync_interval_s=self.options.sync_interval_s,
            facility_id=self.facility_id,
            capacity=self.options.capacity,
            doors_snippet=hubdoors.snippet_path(broker_dir, self.facility_id),
            broker_ca_file=broker_dir / "ca.pem",
        )
        hub_toml.write_text(demo_config.hub_config(settings), encoding="utf-8")
        problems = hubdoors.check_hub_config(hub_toml, self.facility_id, records)
        if problems:
            raise DemoError("hub.toml disagrees with the fleet: " + "; ".join(problems))
        staff = _write_secret(hub_dir / "staff-password", self.secrets.staff_password)
        self._command(
            hub_commands.add_user, "--config", str(hub_toml), "--username", STAFF,
            "--role", "admin", "--password-file", str(staff),
        )  # fmt: skip
        self._spawn("hub", "-v", "hub", "serve", "--config", str(hub_toml))
        self.step(
            f"hub starting, staff account {STAFF!r}, syncing with the registry every "
            f"{settings.sync_interval_s:g} s"
        )

    def start_nodes(self) -> None:
        per_door = {
            "entry": self.options.visitors_per_minute / self.options.entries,
            # People stay a while: fewer come out than go in, and the building fills up.
            "exit": EXIT_SHARE * self.options.visitors_per_minute / self.options.exits,
        }
        self.inside = InsideTracker(
            self.url,
            STAFF,
            self.secrets.staff_password,
            self.facility_id,
            self.passes,
            self.workdir / "inside.txt",
        )
        for enrolment in self.enrolments:
            record = enrolment.record
            state = self.workdir / "nodes" / record.node_id
            state.mkdir(parents=True)
            # As the bundle's install.sh does: the node starts with the registry's keys.
            shutil.copyfile(enrolment.bundle_dir / "trust.json", state / "trust.json")
            shutil.copyfile(enrolment.bundle_dir / "list-keys.json", state / "list-keys.json")
            exit_door = record.direction == "exit"
            sim = demo_config.SimulatedDoor(
                state_dir=state,
                # Anyone may come to an entrance; only people inside come to an exit.
                visitors_file=self.workdir / ("inside.txt" if exit_door else "visitors.txt"),
                visitors_per_minute=per_door[record.direction],
                follow=exit_door,
            )
            config = self.workdir / "nodes" / f"{record.node_id}.toml"
            config.write_text(
                demo_config.node_config(enrolment.bundle_dir / "node.toml", sim), encoding="utf-8"
            )
            # The MQTT password is read from the credentials directory, as under systemd.
            self._spawn(
                record.node_id, "-v", "node", "run", "--config", str(config),
                credentials=enrolment.bundle_dir,
            )  # fmt: skip
        nodes = ", ".join(e.record.node_id for e in self.enrolments)
        self.step(f"door nodes starting from their bundles: {nodes}")

    # -- while it runs -------------------------------------------------------------------

    def desk_example(self) -> Person:
        """Somebody the staff desk can look up at the registry."""
        if self._example is None:
            greens = [p for p in self.people if p.status is Status.GREEN]
            self._example = (greens or self.people)[0]
        return self._example

    def change_a_status(self) -> str | None:
        """One person's status changes at the registry, as health offices report them.

        Every other change turns somebody green to black (a positive test), which the
        doors show by refusing a pass they admitted before; preferably somebody who has
        visited, so that tracing at the registry finds their visit and whom they met. The
        others turn somebody red or yellow to green (vaccinated). The desk's example person
        keeps their status.
        """
        self._changes += 1
        if self._changes % 2:
            turns = {Status.GREEN: Status.BLACK}
        else:
            turns = {Status.RED: Status.GREEN, Status.YELLOW: Status.GREEN}
        example = self.desk_example()
        candidates = [
            i for i, p in enumerate(self.people) if p.status in turns and p.nik != example.nik
        ]
        # Somebody who has been and gone turns black: tracing has their visit to show.
        visited = self.inside.left if self.inside is not None else set()
        traced = [i for i in candidates if self.subjects.get(self.people[i].nik) in visited]
        if Status.BLACK in turns.values() and traced:
            candidates = traced
        if not candidates:
            return None
        index = candidates[int(self.rng.integers(len(candidates)))]
        person = self.people[index]
        changed = Person(person.nik, person.name, turns[person.status])
        try:
            self.operator.set_person(changed.nik, changed.name, changed.status.label, changed.doses)
        except RegistryCallError as err:
            logger.warning("could not change a status at the registry: %s", err)
            return None
        self.people[index] = changed
        line = (
            f"registry: {changed.name} ({changed.nik}) is now {changed.status.label}, was "
            f"{person.status.label}; the doors act on it after the hub's next sync"
        )
        subject = self.subjects.get(changed.nik)
        if changed.status is Status.BLACK and subject is not None:
            try:
                visits, contacts = self.operator.trace(subject)
            except RegistryCallError as err:
                logger.warning("could not trace %s at the registry: %s", subject, err)
            else:
                line += (
                    f"\nregistry: tracing {changed.name}: {visits} visit(s) reached the "
                    f"registry, {contacts} contact(s) to warn"
                )
        return line

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, *args: str, credentials: Path | None = None) -> None:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)  # the demo is not a systemd service
        if credentials is not None:
            env["CREDENTIALS_DIRECTORY"] = str(credentials)
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "pintu", *args],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
        )
        log.close()
        self.processes.append((name, process))

    def _command(self, command: click.Command, *args: str) -> None:
        """Run a ``pintu`` command here, as a technician runs it, without its output."""
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                command.main(list(args), prog_name=f"pintu {command.name}", standalone_mode=False)
        except click.ClickException as err:
            raise DemoError(f"pintu {command.name} failed: {err.format_message()}") from err

    def wait_http(self, url: str, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.stopping.wait(0.2):
                raise Interrupted("stopped while starting")
        raise DemoError(f"{what} did not answer at {url} within {timeout_s:.0f} s")

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                log = self.workdir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise DemoError(f"{name} exited with {process.returncode}; its log ends:\n{tail}")
        if self.broker.process is not None and not self.broker.running:
            raise DemoError(f"the broker exited; see {self.broker.log_path}")

    def stop(self) -> None:
        """Nodes first (their journals flush to the hub), the hub (its outbox to the
        registry), then the registry, then the broker."""
        self.operator.close()
        if self.inside is not None:
            self.inside.close()
        if self.phones is not None:
            self.phones.close()
        groups = [
            [p for p in self.processes if p[0] not in ("hub", "registry")],
            [p for p in self.processes if p[0] == "hub"],
            [p for p in self.processes if p[0] == "registry"],
        ]
        for group in groups:
            for _name, process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for name, process in group:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in 20 s; killing it", name)
                    process.kill()
                    process.wait()
        self.processes.clear()
        self.broker.stop()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _signal_masks(pid: int) -> tuple[int, int] | None:
    """The signals ``pid`` catches and blocks, from /proc; None where that cannot be read."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["SigCgt"].strip(), 16), int(fields["SigBlk"].strip(), 16)
    except (KeyError, ValueError):
        return None


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None


def watch_make(stop: threading.Event, poll_s: float = 0.2) -> threading.Thread | None:
    """Under ``make demo``, stop when make is interrupted.

    GNU make passes a SIGINT or SIGHUP on to no child: it waits for its children to end,
    then dies of it. A Ctrl-C in a terminal reaches the demo too (the whole foreground
    group gets it), but an interrupt sent to make alone would leave make waiting and
    every process running. While make handles such a signal it has put the signal's
    handler back to the default and blocks it, which Linux shows in ``/proc``: the demo
    watches for that and stops as if it had been interrupted itself. It also stops if
    make is gone. Elsewhere (no make, no ``/proc``) this does nothing.
    """
    parent = make = os.getppid()
    if _command_name(parent) in ("sh", "dash", "bash"):  # a recipe line run by a shell
        make = _parent_of(parent) or parent
    if _command_name(make) not in ("make", "gmake"):
        return None
    masks = _signal_masks(make)
    if masks is None:
        return None
    watched = sum(1 << (s - 1) for s in _STOP_SIGNALS)
    caught_before = masks[0] & watched

    def watch() -> None:
        while not stop.wait(poll_s):
            now = _signal_masks(make) if os.getppid() == parent else None
            if now is None or (now[0] & watched) != caught_before or now[1] & watched:
                logger.info("make was interrupted or is gone: stopping the demo")
                stop.set()
                return

    thread = threading.Thread(target=watch, name="watch-make", daemon=True)
    thread.start()
    return thread


def _unfailing(say: Callable[[str], None]) -> Callable[[str], None]:
    """``say``, but a closed terminal or pipe must not keep the demo from stopping."""

    def safe(line: str) -> None:
        try:
            say(line)
        except OSError as err:
            logger.debug("cannot print %r: %s", line, err)

    return safe


def run_demo(options: DemoOptions, duration_s: float | None, say: Callable[[str], None]) -> None:
    stop = threading.Event()
    say = _unfailing(say)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C, a service manager's stop, and a closed terminal all stop every process.
    for signum in _STOP_SIGNALS:
        signal.signal(signum, on_signal)
    watch_make(stop)
    try:
        demo = Demo(options, say, stop)
    except BrokerError as err:
        raise DemoError(str(err)) from err
    try:
        try:
            demo.start()
        except (ProvisioningError, BrokerError) as err:
            raise DemoError(str(err)) from err
        example = demo.desk_example()
        say("")
        say(f"  dashboard:  {demo.url}/")
        say(f"  log in as:  {STAFF} / {demo.secrets.staff_password}")
        say(f"  registry:   {demo.registry_url}/ (API: {demo.registry_url}/api/v1/openapi.json)")
        say(f"  console:    {demo.registry_url}/console/login")
        say(f"  operator:   {OPERATOR} / {demo.secrets.operator_password}")
        say(f"  PIC:        {PIC_EMAIL} / {demo.secrets.pic_password} (Demo Mall)")
        say(f"  staff desk check-in, try NIK {example.nik} and name {example.name}")
        say(f"  a visitor's phone wallet ({example.name}; open once, on a phone or in a browser):")
        say(f"              {demo.operator.wallet_link(example.nik)}")
        say("  the doors' posters (open one with that wallet to check in or out by phone):")
        for door in demo.doors:
            say(f"    {door.name:<12} {demo.poster_address(door.door_id)}")
        say(f"  work directory and logs: {demo.workdir}")
        say("")
        say("Press Ctrl-C to stop everything.")
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_change = time.monotonic() + options.status_change_s
        next_count = time.monotonic()
        while not stop.wait(1.0):
            demo.check_alive()
            now = time.monotonic()
            if demo.inside is not None and now >= next_count:
                next_count = now + INSIDE_EVERY_S
                demo.inside.poll()
            if now >= next_change:
                next_change = now + options.status_change_s
                line = demo.change_a_status()
                if line:
                    say(line)
            if deadline is not None and now >= deadline:
                break
    except Interrupted:
        pass
    finally:
        started = bool(demo.processes) or demo.broker.running
        if started:
            say("stopping...")
        demo.stop()
        if started:
            say("stopped.")
