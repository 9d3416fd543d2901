# Crash states a kernel can leave (ALICE, "All File Systems Are Not Created Equal", OSDI 2014).
#
# recorder.py  records the file operations the core makes on CPython (in-process, through minishim)
# states.py    builds the crash states two persistence models allow from such a trace
# workloads.py one workload per brick, with the views an oracle compares (ministate and
#              miniqueue in workloads_state_queue.py)
# contract.py  what the API promises durable (the sync policies) and the queue model over it
# explore.py   runs a workload, checks every crash state (and crashes during the recovery)
