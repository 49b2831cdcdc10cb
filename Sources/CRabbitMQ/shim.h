// librabbitmq 0.11 for Swift: the headers, plus wrappers for what Swift cannot call or import.
#ifndef VIRTMETER_CRABBITMQ_SHIM_H
#define VIRTMETER_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>

// amqp_login is variadic (the SASL method's arguments): Swift cannot call it. The client properties announce the
// `connection.blocked` capability, so a broker under a memory or disk alarm says so (connection.blocked/unblocked)
// instead of just no longer reading the socket.
static inline amqp_rpc_reply_t virtmeter_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                           int channel_max, int frame_max, int heartbeat,
                                                           const char *user, const char *password) {
    amqp_table_entry_t capability;
    capability.key = amqp_cstring_bytes("connection.blocked");
    capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability.value.value.boolean = 1;
    amqp_table_entry_t property;
    property.key = amqp_cstring_bytes("capabilities");
    property.value.kind = AMQP_FIELD_KIND_TABLE;
    property.value.value.table.num_entries = 1;
    property.value.value.table.entries = &capability;
    amqp_table_t properties = {1, &property};
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, &properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// queue.declare with the argument `x-queue-type` set to `queue_type` ("quorum"), as oslo.messaging declares its
// queues with rabbit_quorum_queue; a NULL `queue_type` declares a classic queue (no arguments). A table of one
// entry is awkward to build in Swift (a union and a pointer to a stack value).
static inline amqp_queue_declare_ok_t *virtmeter_amqp_queue_declare(amqp_connection_state_t state,
                                                                     amqp_channel_t channel, amqp_bytes_t queue,
                                                                     amqp_boolean_t passive, amqp_boolean_t durable,
                                                                     amqp_boolean_t exclusive,
                                                                     amqp_boolean_t auto_delete,
                                                                     const char *queue_type) {
    if (queue_type == NULL) {
        return amqp_queue_declare(state, channel, queue, passive, durable, exclusive, auto_delete, amqp_empty_table);
    }
    amqp_table_entry_t type;
    type.key = amqp_cstring_bytes("x-queue-type");
    type.value.kind = AMQP_FIELD_KIND_UTF8;
    type.value.value.bytes = amqp_cstring_bytes(queue_type);
    amqp_table_t arguments = {1, &type};
    return amqp_queue_declare(state, channel, queue, passive, durable, exclusive, auto_delete, arguments);
}

// The method ids are cast macros, which Swift does not import.
static const amqp_method_number_t virtmeter_amqp_basic_ack = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t virtmeter_amqp_basic_nack = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t virtmeter_amqp_basic_return = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t virtmeter_amqp_channel_close = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t virtmeter_amqp_channel_close_ok = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_close = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_close_ok = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_blocked = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_unblocked = AMQP_CONNECTION_UNBLOCKED_METHOD;

#endif
