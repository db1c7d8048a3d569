"""A repository's git config files as git reads them, and the repository format they declare."""

from __future__ import annotations

from pathlib import Path

from gdag.errors import GdagError

# Extensions gdag works with, by lower-cased name; `objectformat` and `refstorage` by value.
SUPPORTED = {"noop", "noop-v1", "partialclone", "preciousobjects", "worktreeconfig"}
# Extensions git honours in format version 0 (they predate version 1); others only in 1.
V0_EXTENSIONS = {"noop", "partialclone", "preciousobjects", "worktreeconfig"}
ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}
TRUE = {"true", "yes", "on", "1", ""}
FALSE = {"false", "no", "off", "0"}


class ConfigError(GdagError):
    """A git config file gdag cannot read, or a repository format it cannot work in."""


class Config:
    """Values by key (`section.name` or `section.subsection.name`), the last one winning."""

    def __init__(self, items: list[tuple[str, str | None]] | None = None) -> None:
        # A key without `=` (`bare`) has the value None: true as a boolean.
        self.items = items or []

    def get(self, key: str) -> str | None:
        return self.values().get(normal_key(key))

    def has(self, key: str) -> bool:
        return normal_key(key) in self.values()

    def values(self) -> dict[str, str | None]:
        return dict(self.items)

    def get_bool(self, key: str) -> bool | None:
        """A boolean as git reads one (true/yes/on/1, false/no/off/0, a number), None if unset."""
        if not self.has(key):
            return None
        text = self.get(key)
        if text is None or text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        try:
            return parse_int(text) != 0
        except ValueError:
            raise ConfigError(f"bad boolean config value {text!r} for {key!r}") from None

    def get_int(self, key: str, default: int) -> int:
        text = self.get(key)
        if text is None:
            return default
        try:
            return parse_int(text)
        except ValueError:
            raise ConfigError(f"bad numeric config value {text!r} for {key!r}") from None

    def section(self, name: str) -> dict[str, str | None]:
        """`name.<key>` values by key (no subsections)."""
        prefix = name.lower() + "."
        return {
            k[len(prefix) :]: v
            for k, v in self.values().items()
            if k.startswith(prefix) and "." not in k[len(prefix) :]
        }


def normal_key(key: str) -> str:
    """Section and name compare case-insensitively, a subsection exactly."""
    section, _, rest = key.partition(".")
    sub, _, name = rest.rpartition(".")
    return ".".join(p for p in (section.lower(), sub, name.lower()) if p)


def parse_int(text: str) -> int:
    factor = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    return int(text[:-1] if factor > 1 else text) * factor


def read_config(path: Path) -> Config:
    """The config file at `path`; a missing one is empty. Includes are not followed
    (git does not follow them for the repository format either)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return Config(parse_config(text))
    except ValueError as exc:
        raise ConfigError(f"bad config line {exc} in file {path}") from None


def read_all(common_dir: Path, git_dir: Path | None = None) -> Config:
    """Every config file git reads for a repository, in git's order, so a key's last
    value is the one git uses: system (`GIT_CONFIG_SYSTEM`, else /etc/gitconfig; none
    with `GIT_CONFIG_NOSYSTEM`), global (`GIT_CONFIG_GLOBAL`, else
    `$XDG_CONFIG_HOME/git/config` and `~/.gitconfig`), the repository's, a linked
    worktree's `config.worktree` (with `extensions.worktreeConfig`), then
    `GIT_CONFIG_COUNT`'s pairs and `git -c`'s (`GIT_CONFIG_PARAMETERS`). Includes are
    not followed."""
    import os

    env = os.environ
    files: list[Path] = []
    if not Config([("x", env.get("GIT_CONFIG_NOSYSTEM", "false"))]).get_bool("x"):
        files.append(Path(env.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    if "GIT_CONFIG_GLOBAL" in env:
        if env["GIT_CONFIG_GLOBAL"]:
            files.append(Path(env["GIT_CONFIG_GLOBAL"]))
    else:
        home = env.get("HOME")
        xdg = env.get("XDG_CONFIG_HOME") or (os.path.join(home, ".config") if home else None)
        if xdg:
            files.append(Path(xdg) / "git" / "config")
        if home:
            files.append(Path(home) / ".gitconfig")
    items: list[tuple[str, str | None]] = []
    for path in files:
        items += read_config(path).items
    local = read_config(common_dir / "config")
    items += local.items
    if git_dir is not None and local.get_bool("extensions.worktreeConfig"):
        items += read_config(git_dir / "config.worktree").items
    try:
        count = int(env.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        count = 0
    for i in range(count):
        key = env.get(f"GIT_CONFIG_KEY_{i}")
        if key:
            items.append((normal_key(key), env.get(f"GIT_CONFIG_VALUE_{i}", "")))
    params: list[str] = []
    if env.get("GIT_CONFIG_PARAMETERS"):
        import shlex

        try:
            params = shlex.split(env["GIT_CONFIG_PARAMETERS"])
        except ValueError:
            pass
    for param in params:  # `'key'='value'`, or `'key'` for true
        key, eq, value = param.partition("=")
        items.append((normal_key(key), value if eq else None))
    return Config(items)


def parse_config(text: str) -> list[tuple[str, str | None]]:
    """(key, value) pairs of git config text. Raises ValueError(line number) when malformed."""
    parser = _Parser(text.removeprefix("\ufeff"))
    return parser.parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.section = ""
        self.items: list[tuple[str, str | None]] = []

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        c = self.peek()
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def fail(self) -> ValueError:
        return ValueError(self.line)

    def parse(self) -> list[tuple[str, str | None]]:
        while self.pos < len(self.text):
            c = self.take()
            if c in " \t\r\n":
                continue
            if c in "#;":
                self.skip_line()
            elif c == "[":
                self.section = self.read_section()
            elif c.isalpha() and self.section:
                self.read_entry(c)
            else:
                raise self.fail()
        return self.items

    def skip_line(self) -> None:
        while self.peek() not in ("", "\n"):
            self.take()

    def read_section(self) -> str:
        name = ""
        while (c := self.take()) not in ("]", " ", "\t"):
            if not (c.isalnum() or c in "-.") or c == "":
                raise self.fail()
            name += c.lower()
        if c == "]":
            head, _, sub = name.partition(".")  # the old `[section.sub]` form
            return f"{head}.{sub}" if sub else head
        while self.peek() in (" ", "\t"):
            self.take()
        if self.take() != '"':
            raise self.fail()
        sub = ""
        while (c := self.take()) != '"':
            if c in ("", "\n"):
                raise self.fail()
            sub += self.take() if c == "\\" else c
        if self.take() != "]":
            raise self.fail()
        return f"{name}.{sub}"

    def read_entry(self, first: str) -> None:
        name = first
        while self.peek().isalnum() or self.peek() == "-":
            name += self.take()
        while self.peek() in (" ", "\t"):
            self.take()
        key = f"{self.section}.{name.lower()}"
        if self.peek() in ("", "\n", "\r", "#", ";"):
            self.skip_line()
            self.items.append((key, None))
            return
        if self.take() != "=":
            raise self.fail()
        self.items.append((key, self.read_value()))

    def read_value(self) -> str:
        value, spaces, quoted = "", "", False
        while True:
            c = self.take()
            if c in ("", "\n"):
                if quoted:
                    raise self.fail()
                return value
            if not quoted and c in "#;":
                self.skip_line()
                return value
            if not quoted and c in " \t\r":
                spaces += " " if value else ""
                continue
            value, spaces = value + spaces, ""
            if c == '"':
                quoted = not quoted
            elif c == "\\":
                e = self.take()
                if e == "\n":
                    continue  # a continued line
                if e not in ESCAPES:
                    raise self.fail()
                value += ESCAPES[e]
            else:
                value += c


def check_format(config: Config, gitdir: Path) -> None:
    """Refuse a repository whose format version or extensions gdag cannot work in."""
    version = config.get_int("core.repositoryformatversion", 0)
    if version not in (0, 1):
        raise ConfigError(
            f"{gitdir}: repository format version {version} is not supported (0 and 1 are)",
            hint="gdag cannot work in this repository",
        )
    for name, value in sorted(config.section("extensions").items()):
        if version == 0 and name not in V0_EXTENSIONS and name not in _V1_ONLY:
            continue  # git ignores unknown extensions in a version 0 repository
        if version == 0 and name in _V1_ONLY:
            raise ConfigError(
                f"{gitdir}: extensions.{name} needs repository format version 1, found 0"
            )
        _check_extension(name, (value or "").lower(), gitdir)


_V1_ONLY = {"noop-v1", "objectformat", "refstorage", "compatobjectformat"}


def _check_extension(name: str, value: str, gitdir: Path) -> None:
    if name == "objectformat" and value != "sha1":
        raise ConfigError(
            f"{gitdir}: the repository uses the {value} object format; gdag supports sha1 only"
        )
    if name == "refstorage" and value != "files":
        raise ConfigError(
            f"{gitdir}: the repository keeps its refs in {value} (extensions.refStorage); "
            "gdag reads the files ref store only",
            hint="convert it with `git refs migrate --ref-format=files` (git 2.46 and later)",
        )
    if name not in SUPPORTED | {"objectformat", "refstorage"}:
        raise ConfigError(
            f"{gitdir}: the repository uses extensions.{name}, which gdag does not know",
            hint="gdag cannot work in this repository safely",
        )
