"""What every app may use and that uses no app: money, ids, errors (the one JSON error shape), env
helpers, durations, jobs (enqueue a task by name after commit), live (send to an org's open pages),
per_loop (clients bound to an event loop)."""
