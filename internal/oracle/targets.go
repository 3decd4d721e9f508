package oracle

// The targets dm-stack.sh's tables use, registered for every test that
// replays them, whatever else its package imports.
import _ "github.com/daxstack/daxstack/targets/all"
