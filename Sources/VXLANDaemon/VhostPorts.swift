import CDPDK
import Foundation
import PollMode
import VTEPConfig

/// The vhost-user access ports (`access[i].vhost`): vxland creates their `net_vhost` devices itself, before the
/// ports are looked up, and removes them (and a server-mode socket left behind) when the dataplane stops.
///
/// Server mode (`client: false`): the vhost library creates and listens on the socket when the port is configured,
/// and unlinks it when the port is closed. Client mode: it connects to the VM manager's socket, and reconnects in
/// the background while there is none, so a VM that starts later (or restarts) is picked up.
final class VhostPorts {
    private struct Device {
        let name: String
        let socket: String
        let server: Bool
    }

    private var devices: [Device] = []

    /// Creates one net_vhost device per access port with `vhost`, with `queues` queue pairs (one per polling core).
    /// Throws, naming the access port, when the socket path cannot be served.
    ///
    /// vxland's own memory need not be hugepages: the vhost library maps the VM's memory (which the VM side must
    /// share: hugepages or memfd) and copies packets to and from vxland's buffers, so `--no-huge` works here.
    init(configuration: VTEPConfiguration, queues: Int) throws {
        for (i, access) in configuration.access.enumerated() where access.vhost != nil {
            try create(access, queues: queues, key: "access[\(i)].vhost")
        }
    }

    /// Creates the net_vhost device of one access port (at start, or attached at run time).
    func create(_ access: VTEPConfiguration.AccessPort, queues: Int, key: String) throws {
        guard let vhost = access.vhost else { return }
        var id: UInt16 = 0
        if rte_eth_dev_get_port_by_name(access.port, &id) == 0 {
            throw SetupError("\(key): a port named \(access.port) exists already (an EAL --vdev?); vxland creates vhost-user ports itself: drop the --vdev or the vhost key")
        }
        let path = URL(fileURLWithPath: vhost.socket).standardizedFileURL.path
        if devices.contains(where: { URL(fileURLWithPath: $0.socket).standardizedFileURL.path == path }) {
            throw SetupError("\(key).socket: \(vhost.socket) is the socket of another vhost-user port")
        }
        if !vhost.client { try VhostPorts.checkServerSocket(vhost.socket, key: key) }
        let arguments = "iface=\(vhost.socket),client=\(vhost.client ? 1 : 0),tso=\(vhost.tso ? 1 : 0),queues=\(max(1, queues))"
        do { try VirtualDevice.create(access.port, arguments: arguments) } catch { throw SetupError("\(key): \(error)") }
        devices.append(Device(name: access.port, socket: vhost.socket, server: !vhost.client))
    }

    /// Whether vxland created the device `name` (and so removes it when the port goes).
    func owns(_ name: String) -> Bool { devices.contains { $0.name == name } }

    /// A server socket's directory must exist; the path must be free, or a socket nobody listens on any more
    /// (left by a vxland that was killed), which is removed so that the vhost library can bind it again.
    static func checkServerSocket(_ path: String, key: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SetupError("\(key).socket: cannot create \(path): directory \(parent) does not exist")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw SetupError("\(key).socket: \(path) exists and is not a socket; vxland will not replace it")
        }
        if isListening(path) {
            throw SetupError("\(key).socket: \(path) is in use: another process listens on it")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw SetupError("\(key).socket: cannot remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether a process accepts connections on the UNIX socket at `path`.
    static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return rc == 0
    }

    /// Server sockets are the owner's alone (0600), whatever the umask: a process that connects is a VM in a
    /// tenant's VNI. The vhost library creates them as the ports start, with vxland's umask (0077) in force until
    /// this narrows them.
    func restrictServerSockets() {
        for device in devices where device.server { chmod(device.socket, 0o600) }
    }

    /// Removes the devices (after the dataplane closed their ports) and any server socket that outlived them.
    func remove() {
        for device in devices.reversed() { remove(device) }
        devices = []
    }

    /// Removes one device, after its port was closed.
    func remove(name: String) {
        guard let i = devices.firstIndex(where: { $0.name == name }) else { return }
        remove(devices.remove(at: i))
    }

    private func remove(_ device: Device) {
        VirtualDevice.remove(device.name)
        // The vhost library unlinks its socket when the port closes; a file still there with nobody listening
        // is ours (a port that was never configured, say).
        var info = stat()
        if device.server, lstat(device.socket, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK, !VhostPorts.isListening(device.socket) {
            unlink(device.socket)
        }
    }

    deinit { remove() }
}
