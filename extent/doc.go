// Package extent is sector arithmetic for daxstack: extents, strided runs and
// exact sets of them.
//
// There are three types. An Extent is a half-open range of 512-byte sectors
// [Start, Start+Len). A Run is Count copies of an extent of Len sectors placed
// Stride sectors apart; it is how a striped mapping looks from one of its
// stripes ("one 8-sector chunk every 32 sectors across 1 TiB" is one Run, not
// 67 million extents). A Set is an exact set of sectors held as disjoint runs,
// sorted by start and coalesced where a rule can see it.
//
// Sets are values: every operation returns a new Set and never changes its
// operands. Union, Intersect, Subtract, Clip and Shift are exact. When both
// operands are periodic with the same stride (the case stripes produce) the
// work and the result are proportional to the number of runs, not the number
// of sectors or chunks. Runs with different strides that overlap fall back to
// walking the elements of the run with fewer elements, which is still exact.
//
// Extents iterates a set as sorted, coalesced plain extents without
// materialising them, so a whole-device loss behind a stripe can be printed
// one sysfs-style "start count" line at a time in constant memory.
//
// Package extent knows nothing about devices. This is the reason it is a
// package of its own: the targets, the reverse map, the store and the event
// stream all speak in sets of sectors, and none of them should have to import
// the device graph to do so.
//
// All sector values must stay below MaxSector; tables and leaves larger than
// that are refused where they are parsed, so the arithmetic here never
// overflows.
package extent
