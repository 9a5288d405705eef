# shellcheck shell=bash
# =================================================================================================
# What the three sbatch scripts of this folder share, sourced by each of them from the checkout
# ($REPO_DIR/example/slurm/job_common.sh: sbatch runs a copy of the script, not the file here).
# Nothing to run on its own and nothing to edit: the scripts' headers list their variables.
#
#   log, die                  timestamped lines; die ends the job with exit code 2 (bad input)
#   workers_per_node          NPROC_PER_NODE: one process per GPU, or per SLURM task on a CPU node;
#                             exports OMP_NUM_THREADS (the node's CPUs shared out)
#   choose_launcher SCRIPT BIND...   arrays launcher (torchrun) and python, and $script, from the
#                             Apptainer image ($CONTAINER, binding the folders given) or the .venv
#   find_rendezvous           nodes, RDZV_HOST, RDZV_PORT: the first node of the job
#   run_with_stop_handling WHAT CMD...   runs CMD in the background, passes SIGUSR1 on to it once
#                             and waits; sets status and stop_signal
#   requeue_after_stop WHAT CONTINUES   requeues the job when SIGUSR1 stopped it (REQUEUE_ON_STOP,
#                             MAX_REQUEUES), else says how to continue; exits with the job's code
# =================================================================================================

log() { printf '[%s] %s\n' "$(date '+%F %T')" "$*"; }
die() { log "error: $*" >&2; exit 2; }

# GPUs of this node: the ones SLURM gave the job, else what nvidia-smi lists, else 0.
gpu_count() {
    if [[ -n ${CUDA_VISIBLE_DEVICES+set} ]]; then  # SLURM sets it to the GPUs it gave the job
        [[ -z $CUDA_VISIBLE_DEVICES || $CUDA_VISIBLE_DEVICES == NoDevFiles ]] && { echo 0; return; }
        tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .
    elif command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
    else
        echo 0
    fi
}

# Processes per node: one per GPU, or - on a CPU-only node - one per SLURM task of this node. CPU
# threads per process: the node's CPUs shared out, set here so that torchrun does not set 1 with
# its "Setting OMP_NUM_THREADS ..." banner; export OMP_NUM_THREADS to choose.
workers_per_node() {
    NPROC_PER_NODE=${NPROC_PER_NODE:-gpu}
    if [[ $NPROC_PER_NODE == gpu ]] && (( $(gpu_count) == 0 )); then
        local tasks=${SLURM_TASKS_PER_NODE:-1}
        NPROC_PER_NODE=${tasks%%[(,]*}  # "4(x2)" -> 4
        log "warning: no GPU on $(hostname); running $NPROC_PER_NODE CPU worker(s) per node (gloo). Slow: for tests only."
    fi
    local workers=$NPROC_PER_NODE
    [[ $workers == gpu ]] && workers=$(gpu_count)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_ON_NODE:-$(nproc)} / (workers > 0 ? workers : 1) ))}
    (( OMP_NUM_THREADS >= 1 )) || OMP_NUM_THREADS=1
}

# How to run torchrun and python: inside the container image, or from the local virtual environment.
# $1: the entry script's name (generate.py, finetune.py); further arguments: folders to bind.
choose_launcher() {
    local name=$1
    shift
    if [[ -n ${CONTAINER:-} ]]; then
        [[ -f $CONTAINER ]] || die "CONTAINER=$CONTAINER: no such image"
        local engine=${CONTAINER_ENGINE:-$(command -v apptainer || command -v singularity || true)}
        [[ -n $engine ]] || die "CONTAINER is set but neither apptainer nor singularity is on PATH (try: module load apptainer)"
        # --cleanenv: the host's Python/conda variables must not leak in; pass on exactly these instead.
        # APPTAINERENV_X / SINGULARITYENV_X become X inside, without showing the value on a command line.
        local variable
        for variable in HF_TOKEN HF_HOME HF_HUB_CACHE HF_HUB_OFFLINE TRANSFORMERS_OFFLINE CUDA_VISIBLE_DEVICES \
                        OMP_NUM_THREADS $(compgen -v NCCL_ || true) $(compgen -v TORCH_ || true) ${CONTAINER_ENV:-}; do
            if [[ -n ${!variable+set} ]]; then
                export "APPTAINERENV_$variable=${!variable}" "SINGULARITYENV_$variable=${!variable}"
            fi
        done
        local binds=() folder
        for folder in "$@"; do binds+=(--bind "$folder"); done
        if [[ -n ${HF_HOME:-} ]]; then mkdir -p -- "$HF_HOME" && binds+=(--bind "$HF_HOME"); fi
        launcher=("$engine" exec --nv --cleanenv "${binds[@]}" "$CONTAINER" torchrun)
        python=("$engine" exec --cleanenv "${binds[@]}" "$CONTAINER" python)
        script=/opt/stable-audio-tools-ext/$name  # installed in the image (container/*.def)
    else
        VENV=${VENV:-$REPO_DIR/.venv}
        [[ -x $VENV/bin/torchrun ]] || die "no $VENV/bin/torchrun: run 'make install' in $REPO_DIR, set VENV, or set CONTAINER"
        launcher=("$VENV/bin/torchrun")
        python=("$VENV/bin/python")
        script=$REPO_DIR/$name
    fi
}

# Where the launchers of a multi-node job meet: the first node of the job.
find_rendezvous() {
    nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
    local head_node
    head_node=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | head -n 1)
    if [[ -z ${RDZV_HOST:-} ]]; then
        RDZV_HOST=$(scontrol show node "$head_node" --oneliner 2>/dev/null | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2 || true)
        RDZV_HOST=${RDZV_HOST:-$head_node}
    fi
    RDZV_PORT=${RDZV_PORT:-$(( 29500 + ${SLURM_JOB_ID:-0} % 1000 ))}
}

# Stop requests. USR1 reaches only the batch script (--signal=B:..., scancel --batch): the
# time-limit warning, or a stop by hand. It is passed on once to the launcher (torchrun, or srun,
# which passes it on to every process of its step on every node). TERM (scancel, preemption)
# reaches every process of the job from SLURM itself, the launcher included, so it is only noted
# here: a second signal would cut the launcher's wait for its workers short. A preempted job is
# requeued by SLURM; a cancelled one is not.
# $1: what the workers do when stopped (for the log); the rest: the command. It runs in the
# background so that this shell can react to signals while it waits (bash runs a trap only between
# commands; a foreground launcher would delay it until the end of the run).
run_with_stop_handling() {
    local doing=$1
    shift
    stop_signal=""
    launcher_pid=""
    stop_doing=$doing
    trap 'on_stop USR1' USR1
    trap 'on_stop TERM' TERM
    log "running: $*"
    "$@" &
    launcher_pid=$!
    if [[ $stop_signal == USR1 ]]; then kill -USR1 "$launcher_pid" 2>/dev/null || true; fi  # came during start-up
    while :; do
        status=0
        wait "$launcher_pid" || status=$?
        # wait returns early (status > 128) when a trap ran: keep waiting while the launcher still runs.
        if (( status > 128 )) && kill -0 "$launcher_pid" 2>/dev/null; then continue; fi
        if (( status > 128 )); then wait "$launcher_pid" 2>/dev/null && status=0 || status=$?; fi
        break
    done
}

on_stop() {
    [[ -z $stop_signal ]] || return 0
    stop_signal=$1
    log "received SIG$1: $stop_doing"
    if [[ $1 == USR1 && -n $launcher_pid ]]; then kill -USR1 "$launcher_pid" 2>/dev/null || true; fi
}

# After a stop by SIGUSR1: requeue the job (it starts again from the top and continues).
# $1: the launcher's name, $2: how the requeued job continues (for the log).
requeue_after_stop() {
    local launcher_name=$1 continues=$2
    if [[ $stop_signal == USR1 && ${REQUEUE_ON_STOP:-1} == 1 && -n ${SLURM_JOB_ID:-} ]]; then
        if (( ${SLURM_RESTART_COUNT:-0} >= ${MAX_REQUEUES:-10} )); then
            log "stopped, but requeued ${SLURM_RESTART_COUNT} times already (MAX_REQUEUES=${MAX_REQUEUES:-10}): not requeueing"
            exit "$status"
        fi
        log "stopped ($launcher_name exit $status); requeueing job $SLURM_JOB_ID: $continues"
        if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
        log "requeue refused; resubmit the same command to continue"
    fi
    log "$launcher_name exited with $status${stop_signal:+ after SIG$stop_signal}; rerun the same command to continue"
    exit "$status"
}
