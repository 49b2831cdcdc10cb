import Testing
import VirtMeterAMQP

/// `AMQPURL.list`: a cluster's nodes in oslo.messaging's transport URL form, or full URLs joined with commas.
@Suite("AMQP node lists")
struct AMQPNodeListTests {
    @Test("oslo's form: one scheme, per-node users and ports, the vhost at the end shared by every node")
    func osloForm() throws {
        let nodes = try AMQPURL.list("amqp://u1@h1:5672,u2:p%2C2@h2:5673,h3/v%2Fh")
        #expect(nodes.map(\.endpoint) == ["h1:5672", "h2:5673", "h3:5672"])
        #expect(nodes.map(\.user) == ["u1", "u2", "guest"])
        #expect(nodes.map(\.vhost) == ["v/h", "v/h", "v/h"])
        #expect(nodes[1].password == "p,2" && nodes.allSatisfy { !$0.tls })
        #expect(nodes.map(\.description).allSatisfy { !$0.contains("p,2") && !$0.contains("p%2C2") })
    }

    @Test("full URLs joined with commas (a YAML list) keep their own vhost; one URL is a list of one")
    func fullURLs() throws {
        let nodes = try AMQPURL.list("amqps://a@h1:5671/x,amqps://b@h2/")
        #expect(nodes.map(\.endpoint) == ["h1:5671", "h2:5671"] && nodes.map(\.vhost) == ["x", "/"])
        #expect(nodes.allSatisfy { $0.tls })
        #expect(try AMQPURL.list("amqp://u@h:1/v") == [try AMQPURL("amqp://u@h:1/v")])
    }

    @Test("mixed schemes, empty nodes and bad parts are refused with one line that shows no password",
          arguments: [
              ("amqp://u:SECRETPW@h1:5672,amqps://u:SECRETPW@h2:5671/",
               "node 2 of the URL list is h2:5671 with amqps://, node 1 with amqp://: amqp:// and amqps:// cannot be "
                   + "mixed"),
              ("amqps://u:SECRETPW@h1,amqp://h2/",
               "node 2 of the URL list is h2:5672 with amqp://, node 1 with amqps://"),
              ("amqp://u:SECRETPW@h1,,h3/", "node 2 of the URL list is empty"),
              ("amqp://u:SECRETPW@h1,h2:99999/", "port is not a number"),
              ("http://u:SECRETPW@h1,h2/", "must start with amqp:// or amqps://"),
          ])
    func refused(_ text: String, _ expected: String) {
        #expect {
            try AMQPURL.list(text)
        } throws: { error in
            let description = "\(error)"
            return description.contains(expected) && !description.contains("SECRETPW") && !description.contains("\n")
        }
    }
}
