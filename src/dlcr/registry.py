"""A tiny name -> factory registry, one per kind of thing (datasets, models, backends...)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from dlcr.errors import ConfigError, DlcrError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


class UnknownNameError(DlcrError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class _Lazy:
    """A factory named by ``"module:attribute"``, imported on first use (keeps heavy backends such as
    transformers out of start-up). Its signature is the target's, so option checks see the real one."""

    def __init__(self, target: str):
        self.target = target

    def resolve(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.resolve())


def lazy_attributes(module: str, targets: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) that imports attribute ``name`` from the module
    ``targets[name]`` on first access, so a light module can name heavy backend classes."""

    def __getattr__(name: str) -> Any:
        if name in targets:
            return getattr(importlib.import_module(targets[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = (name or obj.__name__).lower()
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"module:attribute"`` (a class or function) without importing it yet."""
        self.register(name)(_Lazy(target))  # type: ignore[arg-type]

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._items:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(key, self._items)}; known: {', '.join(sorted(self._items))}"
            )
        return self._items[key]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build ``name``; options its factory does not take are a one-line :class:`ConfigError`
        listing the ones it does (checked before the call, so the factory's own errors pass through)."""
        factory = self.get(name)
        try:
            sig = inspect.signature(factory)
        except (TypeError, ValueError):  # a builtin without a signature: let the call decide
            return factory(*args, **kwargs)
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            raise ConfigError(f"{self.kind} {name!r}: {e}; its options are: {', '.join(sig.parameters)}") from None
        obj = factory(*args, **kwargs)
        if not args:  # how it was built, for the generation signatures (dlcr.generation.signature)
            with contextlib.suppress(AttributeError, TypeError):
                obj.built_with = (self.kind, str(name).lower(), dict(kwargs))
        return obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return str(name).lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
