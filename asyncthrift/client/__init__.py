"""The client layer: `Thrift`, the `messages`/`beta` resources it serves, and the `Pipeline`
it assembles from the stages below (pipeline, savings, stores, scheduling).

`asyncthrift.client` stays the import path of `Thrift`, `KeyConfig` and `Messages`.
"""

from ._config import make_spend_ledger as make_spend_ledger  # its documented home
from .thrift import ClientView, KeyConfig, Messages, Thrift

__all__ = ["ClientView", "KeyConfig", "Messages", "Thrift", "make_spend_ledger"]
