"""The campaign's rows: each check measures one promise and returns a Row with its figure."""

from dataclasses import dataclass, field
from typing import Any

from reliability.environment import Campaign, Service
from tests.zip_readers import ZIP_READERS


@dataclass(frozen=True)
class Budget:
    """The scale of every row; `FULL` is `make reliability`, `CI` runs inside CI."""

    name: str
    tenancy_examples: int
    auth_examples: int
    input_examples: int
    faults: int
    disconnects: int
    concurrent_owners: int
    concurrent_per_owner: int
    concurrent_videos: int
    concurrent_video_bytes: int
    slow_readers: int
    deadline: float
    grace: float
    race_downloads: int
    sweep_rows: int
    outage_seconds: float
    zip64_readers: tuple[str, ...]
    webhook_down: int
    webhook_flapping: int
    webhook_burst: int
    render_generations: int
    worker_kills: int
    race_generations: int
    render_settle_seconds: float
    ssrf_examples: int
    two_node_videos: int
    two_node_video_bytes: int


MB = 1 << 20
ALL_READERS = tuple(ZIP_READERS)

FULL = Budget(
    name="full",
    tenancy_examples=1000,
    auth_examples=2000,
    input_examples=5000,
    faults=300,
    disconnects=100,
    concurrent_owners=4,
    concurrent_per_owner=10,
    concurrent_videos=20,
    concurrent_video_bytes=2 * MB,
    slow_readers=16,
    deadline=20.0,
    grace=30.0,
    race_downloads=20,
    sweep_rows=20_000,
    outage_seconds=60.0,
    zip64_readers=ALL_READERS,
    webhook_down=200,
    webhook_flapping=300,
    webhook_burst=1000,
    render_generations=200,
    worker_kills=10,
    race_generations=100,
    render_settle_seconds=180.0,
    ssrf_examples=1000,
    two_node_videos=4,
    two_node_video_bytes=16 * MB,
)
CI = Budget(
    name="ci",
    tenancy_examples=60,
    auth_examples=200,
    input_examples=300,
    faults=20,
    disconnects=10,
    concurrent_owners=2,
    concurrent_per_owner=4,
    concurrent_videos=5,
    concurrent_video_bytes=MB // 2,
    slow_readers=4,
    deadline=6.0,
    grace=9.0,
    race_downloads=5,
    sweep_rows=1000,
    outage_seconds=5.0,
    zip64_readers=("bsdtar-pipe",),
    webhook_down=20,
    webhook_flapping=40,
    webhook_burst=200,
    render_generations=40,
    worker_kills=4,
    race_generations=30,
    render_settle_seconds=90.0,
    ssrf_examples=150,
    two_node_videos=2,
    two_node_video_bytes=16 * MB,
)


@dataclass
class Row:
    name: str
    check: str
    scale: str
    figure: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Context:
    """What every check gets: the budget, the running services and the seeded data."""

    budget: Budget
    campaign: Campaign
    web: Service
    nginx: Service
    celery: Service | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def celery_stop(self) -> None:
        """Stop the campaign's sweeping worker, for a row whose outcome a render or a sweep
        would change (it starts again when a row needs it: `expiry.celery_running`)."""
        if self.celery is not None:
            self.celery.stop()
            self.celery = None

    @property
    def web_port(self) -> int:
        assert self.web.port is not None
        return self.web.port

    @property
    def nginx_port(self) -> int:
        assert self.nginx.port is not None
        return self.nginx.port


class Violations:
    """A count of broken promises and the first few examples of them."""

    def __init__(self, keep: int = 20) -> None:
        self.count = 0
        self.samples: list[str] = []
        self.keep = keep

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.samples) < self.keep:
            self.samples.append(text[:500])

    def __bool__(self) -> bool:
        return self.count > 0
