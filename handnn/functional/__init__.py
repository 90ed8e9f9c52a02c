"""Pure forward/backward pairs: ``out, cache = *_forward(...)``; ``grads = *_backward(dout, cache)``.

Backward functions never modify ``dout`` or the cache; forward functions never modify their input
(BatchNorm's running statistics, passed explicitly, are updated in place as in ``torch.nn.functional``).
"""
from .activation import (
    gelu_backward, gelu_forward, leaky_relu_backward, leaky_relu_forward, log_softmax_backward,
    log_softmax_forward, relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softmax_backward,
    softmax_forward, tanh_backward, tanh_forward,
)
from .attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from .conv import conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward
from .dropout import dropout2d_backward, dropout2d_forward, dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .loss import (
    binary_cross_entropy_backward, binary_cross_entropy_forward, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_forward, cross_entropy_backward, cross_entropy_forward, huber_loss_backward,
    huber_loss_forward, l1_loss_backward, l1_loss_forward, mse_loss_backward, mse_loss_forward, nll_loss_backward,
    nll_loss_forward, smooth_l1_loss_backward, smooth_l1_loss_forward,
)
from .normalization import (
    batch_norm_backward, batch_norm_forward, group_norm_backward, group_norm_forward, layer_norm_backward,
    layer_norm_forward,
)
from .pooling import (
    adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, avg_pool2d_backward, avg_pool2d_forward,
    max_pool2d_backward, max_pool2d_forward,
)
from .rnn import (
    gru_cell_backward, gru_cell_forward, gru_layer_backward, gru_layer_forward, lstm_cell_backward, lstm_cell_forward,
    lstm_layer_backward, lstm_layer_forward, rnn_cell_backward, rnn_cell_forward, rnn_layer_backward,
    rnn_layer_forward,
)
from .sparse import embedding_backward, embedding_forward

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward"))]
