"""What is done with a finished run: load it (network + the intensity rule it recorded: the one truth for every
command), evaluate, calibrate, predict and export. Everything here runs through the same
:class:`~txkit.training.runtime.Runtime` as training: on the GPU with loader workers when there is one."""
