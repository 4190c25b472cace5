// Test hook for interrupted restores: with CRYO_RESTORE_FAULT_POINT=NAME or
// NAME:SIGNAL in the environment (SIGNAL: KILL, the default, INT, TERM or a
// number), the restore kills cryo with that signal when it reaches point NAME,
// so that a test can check what an interrupted restore leaves behind at every
// step. A point reached in a restore helper signals cryo (the helper then
// waits to be killed with it). Without the variable, a point costs a branch.
// NAME:HOLDFD does not kill: a helper reaching NAME holds an fd of its own
// for 200 ms and fails (its process exits 1, so the restore fails) if that fd
// was closed or replaced meanwhile, as a helper sharing its fd table
// (CLONE_FILES) with others would find if one of them closed or installed
// fds while it had a file open there.
// (The dump side uses a hook of its own.)
#pragma once

namespace cryo {

// In cryo, when the restore starts: reads the variable, remembers cryo's pid.
void ArmRestoreFaults();
// Kills cryo if `name` is the point asked for.
void RestoreFaultPoint(const char* name);
// In cryo: if the point asked for is `name`, which a helper reaches, waits
// there (bounded) for the helper to kill it, so that cryo dies exactly then.
void RestoreFaultAwait(const char* name);

}  // namespace cryo
