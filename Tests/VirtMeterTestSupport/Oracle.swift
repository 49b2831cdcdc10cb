import VirtMeterCore

/// The test oracle for the wire form: a sample written as a JSON tree, key by key in ceilometer's order, and signed
/// by the generic walk over that tree. Production writes samples with `SampleEncoder`; the golden tests check that the
/// two agree byte for byte on decoding and signature.
extension Sample {
    /// The sample dict without its signature, as a tree.
    package var oracleUnsigned: [(String, JSONValue)] {
        [
            ("source", .string(source)),
            ("counter_name", .string(name)),
            ("counter_type", .string(type.rawValue)),
            ("counter_unit", .string(unit)),
            ("counter_volume", volume.oracleJSON),
            ("user_id", .string(userID)),
            ("user_name", .string(userName)),
            ("project_id", .string(projectID)),
            ("project_name", .string(projectName)),
            ("resource_id", .string(resourceID)),
            ("timestamp", .string(timestamp)),
            ("resource_metadata", resourceMetadata),
            ("message_id", .string(messageID)),
            ("monotonic_time", .double(monotonicTime)),
        ]
    }

    /// The whole sample dict, with its signature last.
    package var oracleJSON: JSONValue { .object(oracleUnsigned + [("message_signature", .string(signature))]) }

    /// The sample with the signature the generic walk computes over its tree.
    package func oracleSigned(with signer: SampleSigner) -> Sample {
        var sample = self
        sample.signature = signer.signature(of: .object(oracleUnsigned))
        return sample
    }
}

extension Volume {
    var oracleJSON: JSONValue {
        switch self {
        case .int(let value): return .int(value)
        case .double(let value): return .double(value)
        }
    }
}

extension SampleRecords {
    /// Each sample dict parsed back, in order (what a consumer decodes).
    package func decodedDicts() throws -> [JSONValue] {
        try sampleDicts.map { try JSONValue.parse(bytes: Array($0)) }
    }

    /// Each sample read back, in order; a dict that is not a sample is an error.
    package func decodedSamples() throws -> [Sample] {
        try decodedDicts().map { dict in
            guard let sample = Sample(json: dict) else { throw OracleError.notASample(dict.jsonText) }
            return sample
        }
    }
}

enum OracleError: Error { case notASample(String) }

/// `samples` written by the production encoder, signed by `signer`, in records of `perRecord`.
package func encodedRecords(_ samples: [Sample], signer: SampleSigner, perRecord: Int = 50) -> SampleRecords {
    var encoder = SampleEncoder(signer: signer)
    var writer = RecordWriter(samplesPerRecord: perRecord)
    for sample in samples { writer.append(sample, encoder: &encoder) }
    return writer.takeAll()
}
