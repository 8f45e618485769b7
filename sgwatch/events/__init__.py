"""Change events: ActionTrail records of the writes that change what sgwatch watches.

They arrive pushed by EventBridge (``sgwatch.events`` listener) or pulled from ``LookupEvents``,
and both paths hand :class:`~sgwatch.events.model.ChangeEvent` values to the same handling.
"""
