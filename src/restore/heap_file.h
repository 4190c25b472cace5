// cryo's heap moved into a file before the restore helpers are cloned.
//
// Every restore helper is a clone of cryo (and of its parent helper), so each
// clone copies the page tables of cryo's private memory, above all its heap,
// which holds the whole loaded image, and each restored process then unmaps
// it all again in the restorer blob (the image of a tree of 200 processes is
// about 7 MiB of heap: some 1,800 page-table entries per clone).
//
// fork(2) copies no page table for a private file mapping that has no private
// pages yet (vma_needs_copy() in mm/memory.c: the child faults the pages in
// from the page cache when it touches them). So, just before the root is
// cloned, the heap's bytes are written to a memfd and the file is mapped
// MAP_PRIVATE over the heap, at the same addresses: every pointer stays
// valid, cryo and each helper see the same bytes, a page either of them
// writes becomes its own (copy-on-write, as before), and a clone copies only
// the page-table entries of the pages its parent touched since. (A helper
// that read the whole image would map it all back, 16 pages per fault with
// the kernel's fault-around: helpers read only their own process and the
// facts cryo gathered for them, ProcessFacts in helper.h.)
#pragma once

#include <cstdint>

#include "base/status.h"

namespace cryo {

// Moves every private read-write [heap] mapping of cryo into one memfd, page
// contents kept (the pages present or swapped out are copied; the others
// stay holes, which read as zero, as those pages did). Only while cryo is
// single-threaded: nothing may allocate or free between the copy of a range
// and its remapping. Returns the bytes moved. On failure the ranges not yet
// moved stay as they were (the restore goes on without this).
Result<uint64_t> MoveHeapToFile();

// Once the root is cloned: cryo's own copy of every page of its moved heap,
// made at once (MADV_POPULATE_WRITE) rather than by one copy-on-write fault
// per page as cryo goes on (and frees the image at the end).
void TakeBackHeap();

}  // namespace cryo
