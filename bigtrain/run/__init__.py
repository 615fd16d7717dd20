"""Run: executing cells. The sweep driver, executors (local pool, Ray), workers and data-parallel
ranks, record builders, progress on the terminal. Measuring side: never imports pandas or seaborn."""
