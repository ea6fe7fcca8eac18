"""Configuration: the YAML node reader (`node.py`: typed values with path-named errors) and the loader
(`load.py`: the whole `Config`, read once per (re)load). Each feature's block is parsed by its own
package (`events/config.py`, `store/config.py`, ...) through the node reader.

May import: the feature packages' config modules and agent.collectors (probe kinds). Never agent.app or
agent.api.
"""
