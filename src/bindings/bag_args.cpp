#include "bindings/bag_args.hpp"

#include <algorithm>
#include <string>

namespace fastembed::bindings {

BagMode parse_bag_mode(const std::string& mode) {
    if (mode == "sum") return BagMode::sum;
    if (mode == "mean") return BagMode::mean;
    if (mode == "max") return BagMode::max;
    throw py::value_error("mode must be 'sum', 'mean' or 'max', got '" + mode + "'");
}

BagLayout bag_layout(const py::array& bounds, std::size_t n) {
    if (!py::isinstance<py::array_t<std::int64_t>>(bounds) || bounds.ndim() != 1 || bounds.size() < 1) {
        throw py::value_error("bag bounds must be a non-empty 1-d int64 array");
    }
    require_layout(bounds, "bag bounds", false);
    const auto* data = static_cast<const std::int64_t*>(bounds.data());
    const auto num_bags = static_cast<std::size_t>(bounds.size() - 1);
    if (num_bags > 0 && data[0] != 0) throw py::value_error("offsets[0] must be 0");
    for (std::size_t b = 0; b < num_bags; ++b) {
        if (data[b + 1] < data[b]) throw py::value_error("offsets must be non-decreasing");
    }
    if (num_bags > 0 && static_cast<std::uint64_t>(data[num_bags]) > n) {
        throw py::value_error("offsets must not exceed the number of ids");
    }
    return BagLayout{data, num_bags};
}

py::array bag_bounds(const py::array& offsets, std::size_t num_ids, bool include_last_offset) {
    require_ids(offsets, "offsets");
    if (offsets.ndim() != 1) throw py::value_error("offsets must be 1-d, got shape " + shape_string(offsets));
    const auto count = static_cast<std::size_t>(offsets.size());
    if (include_last_offset && count == 0) {
        throw py::value_error("offsets must hold at least one entry when include_last_offset=True");
    }
    py::array_t<std::int64_t> bounds(static_cast<py::ssize_t>(include_last_offset ? count : count + 1));
    std::int64_t* destination = bounds.mutable_data();
    dispatch_ids(offsets, [&](auto id_tag) {
        using I = typename decltype(id_tag)::type;
        const I* given = static_cast<const I*>(offsets.data());
        if (count > 0 && given[0] != 0) {
            throw py::value_error("offsets[0] must be 0, got " + std::to_string(given[0]));
        }
        for (std::size_t k = 1; k < count; ++k) {
            if (given[k] < given[k - 1]) {
                throw py::value_error("offsets must be non-decreasing, but offsets[" + std::to_string(k) +
                                      "]=" + std::to_string(given[k]) + " < offsets[" +
                                      std::to_string(k - 1) + "]=" + std::to_string(given[k - 1]));
            }
        }
        if (count > 0 && static_cast<std::uint64_t>(given[count - 1]) > num_ids) {
            throw py::value_error("offsets[-1]=" + std::to_string(given[count - 1]) +
                                  " is larger than the number of ids, " + std::to_string(num_ids));
        }
        std::copy(given, given + count, destination);
    });
    if (!include_last_offset) destination[count] = static_cast<std::int64_t>(num_ids);
    return std::move(bounds);
}

const std::int64_t* checked_argmax(const std::optional<py::array>& argmax, const BagLayout& bags,
                                   std::size_t dim) {
    if (!argmax || !py::isinstance<py::array_t<std::int64_t>>(*argmax) || argmax->ndim() != 2 ||
        static_cast<std::size_t>(argmax->shape(0)) != bags.num_bags ||
        static_cast<std::size_t>(argmax->shape(1)) != dim) {
        throw py::value_error(
            "mode='max' needs the forward's argmax: int64 of shape (num_bags, embedding_dim) = (" +
            std::to_string(bags.num_bags) + ", " + std::to_string(dim) + ")");
    }
    require_layout(*argmax, "argmax", false);
    const auto* data = static_cast<const std::int64_t*>(argmax->data());
    for (std::size_t b = 0; b < bags.num_bags; ++b) {
        for (std::size_t d = 0; d < dim; ++d) {
            const std::int64_t position = data[b * dim + d];
            const bool inside = position >= 0 && static_cast<std::size_t>(position) >= bags.begin(b) &&
                                static_cast<std::size_t>(position) < bags.end(b);
            if (!inside && position != -1) {
                throw py::value_error("argmax[" + std::to_string(b) + ", " + std::to_string(d) + "]=" +
                                      std::to_string(position) + " is not a position in bag " +
                                      std::to_string(b) + " (ids[" + std::to_string(bags.begin(b)) + ":" +
                                      std::to_string(bags.end(b)) + "])");
            }
        }
    }
    return data;
}

std::int64_t checked_padding_idx(long long padding_idx, std::size_t num_embeddings) {
    if (padding_idx < -1 || (padding_idx >= 0 && static_cast<std::size_t>(padding_idx) >= num_embeddings)) {
        throw py::value_error("padding_idx must be in [0, num_embeddings) or -1, got " +
                              std::to_string(padding_idx));
    }
    return padding_idx;
}

}  // namespace fastembed::bindings
