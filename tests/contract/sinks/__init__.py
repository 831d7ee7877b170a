"""One contract fixture per registered sink, in a module named after it (sink_contract.py says how).

Every module here is imported by `tests.contract.sink_contract.fixtures()`; nothing lists them.
"""
