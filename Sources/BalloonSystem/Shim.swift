import CBalloonShim
import Glibc

// Thin re-exports so other files in this target need not import the shim's
// spelling everywhere.
@inline(__always) func cballoonGetFlags(_ fd: Int32) -> Int32 { cballoon_fcntl_getfl(fd) }
@inline(__always) func cballoonSetFlags(_ fd: Int32, _ flags: Int32) -> Int32 { cballoon_fcntl_setfl(fd, flags) }

public enum PageSize {
    public static let bytes: Int = Int(sysconf(Int32(_SC_PAGESIZE)))
}
