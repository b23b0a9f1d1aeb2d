# SPDX-License-Identifier: Apache-2.0
# bash completion for balloond(8) (sourced by bash-completion).
_balloond() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        --config) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
        --channel) mapfile -t COMPREPLY < <(compgen -W "unix: virtio-serial: vsock:" -- "$cur"); compopt -o nospace; return ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "--config --channel --dump-config --version --help" -- "$cur")
}
complete -F _balloond balloond
