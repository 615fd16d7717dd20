"""`bigbench history`: per-cell series across commits, change points, a gate and a dashboard.

Analysing side: reads run folders (never torch or pynvml). `load` finds and reads the runs,
`series` groups them by machine and builds one series per cell x metric, `changepoints` holds
the pure statistics (ruptures' PELT on noise-scaled log values), `gate` the nightly verdict and
its Markdown/JSON, `dashboard` the static HTML site.
"""
