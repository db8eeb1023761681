"""Import this before defining a pydantic model.

pydantic reads every installed distribution's entry points when its first model class is created (to find
pydantic plugins). One broken ``entry_points.txt`` anywhere would then break ``import txkit`` and every
command, although ``txkit plugins`` is the command that should report it. pydantic caches a failed first
read as "no plugins", so reading once here, inside a guard, keeps txkit working.
"""

try:
    from pydantic.plugin._loader import get_plugins

    get_plugins()
except Exception:  # noqa: BLE001 - any failure only means: no pydantic plugins
    pass
