// Spec values (messages, predicate literals) are JSON values; users of the spec model get the type too.
@_exported import ClusterJSON
