"""From the resolved project to a plan and its run: the plan as data, cache sources, input
digests and what need not be built, the generated override, and the pipeline that runs it."""
