# SPDX-License-Identifier: Apache-2.0
# fish completion for balloond(8).
complete -c balloond -f
complete -c balloond -l config -r -F -d 'Configuration file; drop-ins are read from PATH.d/*.conf'
complete -c balloond -l channel -x -a 'unix: virtio-serial: vsock:' -d 'Overrides Listen= (unix:PATH, virtio-serial:NAME_OR_PATH, vsock:PORT)'
complete -c balloond -l dump-config -d 'Print the effective configuration and exit'
complete -c balloond -l version -d 'Show the version'
complete -c balloond -s h -l help -d 'Show help information'
