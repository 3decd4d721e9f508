package nbdleaf

// BadSectors exposes badSectors to the fuzz test.
var BadSectors = badSectors
