// A task still in cryo's code when it is seized: a cryo was killed while the
// task ran one of its remote calls, and the task, finishing by itself, has
// not reached its rt_sigreturn yet. Typically it sleeps out the rest of an
// interrupted sleep in the code's "restart" (injected_code.h), which may
// last as long as the sleep had left. Its own state is in the frame on its
// stack (sigframe.h): ReclaimTasks() takes it from there into the task's
// registers and mask (and the seized state), so that the task stands again
// where its own code was: a call interrupted with ERESTART_RESTARTBLOCK
// goes on with restart_syscall when the task resumes (its restart block is
// still armed), a finished one returns its result. Then cryo can dump the
// task and, later, remove the code. Only frames cryo marked are trusted.
#pragma once

#include "base/status.h"
#include "inject/injected_code.h"
#include "seize/seize.h"

namespace cryo {

Status ReclaimTasks(SeizedProcess& sp, const InjectedCode& code);

}  // namespace cryo
